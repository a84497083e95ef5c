"""An epoch-based training loop that resumes exactly in the middle of an epoch.

mmengine 0.10.7's ``EpochBasedTrainLoop`` restores the epoch and iteration
counters from a checkpoint but then replays the whole interrupted epoch from its
first batch, so a run resumed from an iteration checkpoint (``CheckpointHook``
with ``by_epoch=False``) trains on part of the epoch twice and ends with other
weights than an uninterrupted run. The random generators are not restored either,
so data augmentation and mixup draw different numbers after a resume.

:class:`ResumableEpochBasedTrainLoop` fixes both: the checkpoints carry the
random generator states (python, numpy, torch, cuda) of the process that saves
them, and on resume the loop skips the batches of the interrupted epoch that were
already trained on (by loading them, so that the sampler order and the data
workers' random streams are the ones of the original run), then restores the
generators. With ``randomness=dict(seed=..., deterministic=True)`` a resumed
single-process run then ends with the same weights as an uninterrupted one.
In multi-process runs only rank 0's generator state is saved (mmengine saves
checkpoints on rank 0 only); other ranks resume with re-seeded generators.
"""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from .checkpoint import from_portable, to_portable
from .registry import HOOKS, LOOPS

RNG_KEY = 'rng_state'


def get_rng_state() -> dict:
    """Snapshot of the python, numpy, torch and cuda random generators."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore a snapshot taken by :func:`get_rng_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    # Runner.resume maps checkpoints to the training device; generator
    # states must be CPU byte tensors.
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random generator states in checkpoints and read them back.

    Registered by :class:`ResumableEpochBasedTrainLoop`; the loop decides when
    to apply the loaded state (only when it resumes training).
    """
    # Run after every other before_save_checkpoint hook: nothing may draw
    # random numbers between the snapshot and the write.
    priority = 'LOWEST'

    def __init__(self) -> None:
        self.loaded_state: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Portable (numpy's state as a tensor) by itself: this hook runs after
        # PortableCheckpointHook, which converts what the other hooks add.
        checkpoint[RNG_KEY] = to_portable(get_rng_state())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # from_portable also passes older checkpoints' numpy state through.
        self.loaded_state = from_portable(checkpoint.get(RNG_KEY))


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` with exact mid-epoch resume.

    Takes the same arguments as mmengine's ``EpochBasedTrainLoop``. Use it with
    ``train_cfg=dict(type='res2net_mm.ResumableEpochBasedTrainLoop',
    max_epochs=..., val_interval=...)``.
    """

    def __init__(self, runner, *args, **kwargs) -> None:
        super().__init__(runner, *args, **kwargs)
        self._rng_hook = RNGStateHook()
        runner.register_hook(self._rng_hook)
        self._resumed = False

    def run(self) -> torch.nn.Module:
        # A non-zero iteration counter before the first epoch means that
        # Runner.resume() restored it.
        self._resumed = self._iter > 0
        return super().run()

    def run_epoch(self) -> None:
        """Iterate one epoch, skipping the batches a resumed run already did."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        skip = 0
        resumed, self._resumed = self._resumed, False
        if resumed:
            skip = self._iter - self._epoch * len(self.dataloader)
            if not 0 <= skip < len(self.dataloader):
                raise RuntimeError(
                    f'cannot resume at iteration {self._iter} of epoch '
                    f'{self._epoch}: the epoch has {len(self.dataloader)} '
                    'iterations. Was the checkpoint written with another '
                    'batch size, number of processes or dataset?')
        data_iter = iter(self.dataloader)
        if skip:
            print_log(
                f'Resuming in the middle of epoch {self._epoch + 1}: '
                f'skipping {skip} batches already trained on.',
                logger='current')
            for _ in range(skip):
                next(data_iter)
        state = self._rng_hook.loaded_state
        self._rng_hook.loaded_state = None
        if resumed and state is not None and get_rank() == 0:
            set_rng_state(state)
        for idx, data_batch in enumerate(data_iter, start=skip):
            self.run_iter(idx, data_batch)

        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
