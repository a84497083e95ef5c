"""Read, detect, convert and write Res2Net weights of every known format.

Importing it registers the backbones' weight loaders in
:data:`res2net_mm.registry.WEIGHT_LOADERS` (see :mod:`.loading`).
"""
from ..utils.io import atomic_write
from .detect import (FormatDetectionError, backbone_kwargs, describe_variant,
                     detect_format, detect_variant, to_native)
from .errors import (CheckpointError, NonFiniteWeightsError, TensorShapeError,
                     UnsafeCheckpointError, WeightMismatchError)
from .keymaps import FROM_FORMAT, TO_FORMAT
from .loading import (load_checkpoint_any, load_native_into,
                      load_pretrained_from_init_cfg)
from .reading import read_checkpoint
from .saving import convert_state, save_checkpoint_as
from .validate import check_finite, check_shapes, validate_native

__all__ = [
    'FROM_FORMAT', 'TO_FORMAT', 'CheckpointError', 'UnsafeCheckpointError',
    'WeightMismatchError', 'FormatDetectionError', 'read_checkpoint',
    'detect_format', 'detect_variant', 'describe_variant', 'backbone_kwargs',
    'to_native', 'load_checkpoint_any', 'load_native_into',
    'load_pretrained_from_init_cfg', 'save_checkpoint_as', 'convert_state',
    'atomic_write', 'TensorShapeError', 'NonFiniteWeightsError',
    'validate_native', 'check_shapes', 'check_finite'
]
