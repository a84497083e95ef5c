from .blres2net import BLModule, BLRes2Net
from .bottle2neck import Bottle2neck
from .classifier import Res2NetClassifier, build_classifier
from .dla import DLABottle2neck, Res2NetDLA
from .res2net import Res2Net
from .variants import VARIANTS, Variant, get_variant, list_variants

__all__ = [
    'Bottle2neck', 'Res2Net', 'Res2NetClassifier', 'build_classifier',
    'VARIANTS', 'Variant', 'get_variant', 'list_variants', 'Res2NetDLA',
    'DLABottle2neck', 'BLRes2Net', 'BLModule'
]
