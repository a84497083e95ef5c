"""res2net_mm: Res2Net backbones for the OpenMMLab 2.x ecosystem."""
from .models import (VARIANTS, BLRes2Net, Bottle2neck, Res2Net,
                     Res2NetClassifier, Res2NetDLA, build_classifier,
                     get_variant, list_variants)
# Importing .hub registers our classifiers with mmpretrain's model hub (if
# mmpretrain is installed): get_model/list_models/inference_model by name.
from .hub import register_mmpretrain_models
from .registry import MODELS
from .version import __version__
from .converters.download import register_checkpoint_scheme
from .engine.checkpoint import allow_mmengine_checkpoints

# ``res2net_mm://NAME`` wherever mmengine loads a checkpoint (load_from=, ...).
register_checkpoint_scheme()
# Checkpoints that the toolboxes' own tools write in this process load with
# torch.load(weights_only=True) (see res2net_mm.engine.checkpoint).
allow_mmengine_checkpoints()

__all__ = [
    'MODELS', 'Res2Net', 'Res2NetDLA', 'BLRes2Net', 'Bottle2neck',
    'Res2NetClassifier', 'build_classifier', 'VARIANTS', 'get_variant', 'list_variants',
    'register_mmpretrain_models', '__version__'
]
