"""Runtime helpers for training and testing with mmengine 0.10.7."""
from .checkpoint import (PORTABLE_TAG, PortableCheckpointHook,
                         allow_training_checkpoints, from_portable,
                         allow_mmengine_checkpoints,
                         to_portable, training_checkpoint_globals)
from .dist import (exit_after_distributed, finish_distributed,
                   setup_cpu_distributed)
from .loops import (RNGStateHook, ResumableEpochBasedTrainLoop, get_rng_state,
                    set_rng_state)
from .registry import HOOKS, LOOPS
from .runner import build_runner, register_scope_modules

__all__ = [
    'allow_training_checkpoints', 'training_checkpoint_globals',
    'PortableCheckpointHook', 'allow_mmengine_checkpoints', 'to_portable',
    'from_portable', 'PORTABLE_TAG',
    'setup_cpu_distributed', 'finish_distributed', 'exit_after_distributed',
    'RNGStateHook', 'ResumableEpochBasedTrainLoop', 'get_rng_state',
    'set_rng_state', 'HOOKS', 'LOOPS', 'build_runner', 'register_scope_modules'
]
