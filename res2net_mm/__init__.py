"""res2net_mm: Res2Net backbones for the OpenMMLab 2.x ecosystem."""
from .models import (VARIANTS, BLRes2Net, Bottle2neck, Res2Net,
                     Res2NetClassifier, Res2NetDLA, build_classifier,
                     get_variant, list_variants)
from .registry import MODELS
from .version import __version__

__all__ = [
    'MODELS', 'Res2Net', 'Res2NetDLA', 'BLRes2Net', 'Bottle2neck',
    'Res2NetClassifier', 'build_classifier', 'VARIANTS', 'get_variant', 'list_variants',
    '__version__'
]
