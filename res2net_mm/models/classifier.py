"""A plain image classifier around the backbone (timm / official layout)."""
import torch
from mmengine.model import BaseModule
from torch import nn

from ..registry import MODELS
from .blres2net import BLRes2Net
from .dla import Res2NetDLA
from .res2net import Res2Net
from .variants import get_variant

# Backbone classes by ``Variant.model``.
BACKBONES = {
    'Res2Net': Res2Net,
    'Res2NetDLA': Res2NetDLA,
    'bLRes2Net': BLRes2Net,
}


class PooledClassifier(BaseModule):
    """Any backbone returning a tuple of feature maps, global average
    pooling of the last one and a linear classifier (timm's layout).

    Args:
        backbone (nn.Module): The backbone.
        channels (int): Channels of its last feature map.
        num_classes (int): Classes of the linear head. Defaults to 1000.
    """

    def __init__(self, backbone: nn.Module, channels: int,
                 num_classes: int = 1000):
        super().__init__()
        self.backbone = backbone
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(self.forward_features(x)).flatten(1))


@MODELS.register_module()
class Res2NetClassifier(PooledClassifier):
    """Res2Net backbone, global average pooling and a linear classifier.

    The layout of the official models and timm (``fc`` on pooled 2048-d
    features), used to count parameters, compare logits with timm and MindCV,
    and export. For training use mmpretrain's ``ImageClassifier`` with the
    backbone (see ``configs/``).

    Args:
        num_classes (int): Classes of the linear head. Defaults to 1000.
        model (str): Backbone family: ``'Res2Net'``, ``'Res2NetDLA'`` or
            ``'bLRes2Net'``. Defaults to ``'Res2Net'``.
        **backbone_kwargs: Arguments of the backbone (``arch=`` included).
    """

    def __init__(self, num_classes: int = 1000, model: str = 'Res2Net',
                 **backbone_kwargs):
        if model not in BACKBONES:
            raise KeyError(f'unknown backbone family {model!r}; valid: '
                           f'{", ".join(BACKBONES)}')
        backbone_kwargs.setdefault('out_indices', (-1, ))
        backbone = BACKBONES[model](**backbone_kwargs)
        super().__init__(backbone, backbone.out_channels[-1], num_classes)


def build_classifier(arch: str, num_classes: int = 1000,
                     **overrides) -> Res2NetClassifier:
    """Build a named variant with a linear head, e.g. ``'res2net50_v1b'``."""
    return Res2NetClassifier(num_classes=num_classes,
                             model=get_variant(arch).model, arch=arch,
                             **overrides)
