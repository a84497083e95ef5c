"""Res2Net-DLA and Res2NeXt-DLA backbones (Deep Layer Aggregation with Res2Net
blocks, Gao et al., TPAMI 2021, Sec. 3.3; DLA: Yu et al., CVPR 2018).

State-dict names are timm's (``base_layer``, ``level0`` ... ``level5``,
``levelN.tree1...``, ``levelN.root``, ``levelN.project``), so timm's
``dla60_res2net`` / ``dla60_res2next`` weights load unchanged. The official
DLA checkpoints name things the same way but also carry ``project`` layers in
trees of more than one level, which their forward pass computes and never uses
(18 keys in DLA-60);
:func:`res2net_mm.converters.keymaps.dla_from_official` drops them.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_conv_layer, build_norm_layer
from torch import nn

from ..registry import MODELS
from .base import DEFAULT_INIT_CFG, FreezableBackbone
from .bottle2neck import Bottle2neck
from .fusion import can_fold, fold_bn, fold_sequential
from .variants import resolve_arch

# Levels (blocks per aggregation tree) and channels of each of the 6 levels,
# and whether the roots add a residual, per DLA depth (Yu et al., Table 1).
DLA_DEPTHS = {
    60: dict(levels=(1, 1, 1, 2, 3, 1),
             channels=(16, 32, 128, 256, 512, 1024), residual_root=False),
}
# The named variants (in variants.py, model='Res2NetDLA') and the same
# models in timm.
TIMM_NAMES = {'res2net_dla60': 'dla60_res2net',
              'res2next_dla60': 'dla60_res2next'}


class DLABottle2neck(Bottle2neck):
    """The Res2Net block as the DLA models use it.

    A :class:`~res2net_mm.models.Bottle2neck` (the same split code, fast paths
    and deploy), with the three things that differ in the official
    Res2Net-DLA (and timm's ``DlaBottle2neck``): the expansion is 2, not 4
    (the split width is ``floor(out * base_width / 64) * groups // 2`` of the
    *output* channels); only strided blocks are 'stage' blocks (timm's rule;
    in DLA-60 every channel change is strided), and the shortcut comes from
    the enclosing tree (its max-pool + ``project``), passed to ``forward``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the 3x3 convs and of the last split's pool.
        dilation (int): Dilation of the 3x3 convs.
        scales (int): Number of splits. Defaults to 4.
        base_width (int): Split width per group at 64 output channels, before
            the halving by the expansion.
        groups (int): Cardinality of the 3x3 convs (Res2NeXt). Defaults to 1.
        conv_cfg (dict, optional): Conv layer config.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        fast_path (bool): Allow the faster split implementations (see
            :class:`~res2net_mm.models.Bottle2neck`). Defaults to False: the
            grouped stage conv sums in another order than timm's per-split
            convs, and the DLA models keep timm's outputs to 1e-6.
    """
    expansion = 2

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 scales: int = 4,
                 base_width: int = 28,
                 groups: int = 1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 fast_path: bool = False):
        super().__init__(
            in_channels, out_channels // self.expansion, stride=stride,
            dilation=dilation, expansion=self.expansion, scales=scales,
            base_width=base_width, groups=groups, stage_block=stride > 1,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, fast_path=fast_path)

    def _split_width(self, planes: int, base_width: int, groups: int,
                     base_channels: int) -> int:
        out_channels = planes * self.expansion
        return (out_channels * base_width // 64) * groups // self.expansion


class DLARoot(nn.Module):
    """Aggregation node: 1x1 conv over the concatenated children, BN, ReLU
    (plus the first child when ``residual``)."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool,
                 conv_cfg: Optional[dict], norm_cfg: dict):
        super().__init__()
        self.conv = build_conv_layer(conv_cfg, in_channels, out_channels, 1,
                                     bias=False)
        self.bn = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def switch_to_deploy(self) -> None:
        """Fold the BN into the conv, and the ReLU too where no residual is
        added between them."""
        if isinstance(self.bn, nn.Identity) or not can_fold(self.conv,
                                                            self.bn):
            return  # folded already, or not foldable
        self.conv = fold_bn(self.conv, self.bn, relu=not self.residual)
        self.bn = nn.Identity()
        if not self.residual:
            self.relu = nn.Identity()

    def forward(self, children: List[torch.Tensor]) -> torch.Tensor:
        x = self.bn(self.conv(torch.cat(children, 1)))
        if self.residual:
            x = x + children[0]
        return self.relu(x)


class DLATree(nn.Module):
    """Hierarchical deep aggregation tree of ``levels`` levels.

    A 1-level tree is two blocks and a root; deeper trees nest two subtrees,
    the second of which aggregates every earlier output (``children``). The
    projection shortcut exists only in 1-level trees, where it is used.
    """

    def __init__(self, levels: int, in_channels: int, out_channels: int,
                 stride: int = 1, dilation: int = 1, level_root: bool = False,
                 root_dim: int = 0, residual_root: bool = False,
                 block_cfg: Optional[dict] = None,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        block_cfg = block_cfg or {}
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        common = dict(dilation=dilation, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.downsample = nn.MaxPool2d(stride, stride=stride) \
            if stride > 1 else nn.Identity()
        self.project = nn.Identity()
        if levels == 1:
            self.tree1 = DLABottle2neck(in_channels, out_channels, stride,
                                        **common, **block_cfg)
            self.tree2 = DLABottle2neck(out_channels, out_channels, 1,
                                        **common, **block_cfg)
            if in_channels != out_channels:
                self.project = nn.Sequential(
                    build_conv_layer(conv_cfg, in_channels, out_channels, 1,
                                     bias=False),
                    build_norm_layer(norm_cfg, out_channels)[1])
            self.root = DLARoot(root_dim, out_channels, residual_root,
                                conv_cfg, norm_cfg)
        else:
            sub = dict(residual_root=residual_root, block_cfg=block_cfg,
                       **common)
            self.tree1 = DLATree(levels - 1, in_channels, out_channels,
                                 stride, root_dim=0, **sub)
            self.tree2 = DLATree(levels - 1, out_channels, out_channels,
                                 root_dim=root_dim + out_channels, **sub)
            self.root = None
        self.level_root = level_root
        self.levels = levels

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None):
        children = [] if children is None else children
        bottom = self.downsample(x)
        if self.level_root:
            children.append(bottom)
        if self.root is not None:
            x1 = self.tree1(x, self.project(bottom))
            x2 = self.tree2(x1)
            return self.root([x2, x1] + children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, None, children)


@MODELS.register_module()
class Res2NetDLA(FreezableBackbone):
    """Res2Net-DLA / Res2NeXt-DLA backbone.

    Six levels: ``level0`` (stride 1), ``level1`` (2) are plain 3x3 conv
    levels after a 7x7 stride-1 stem (``base_layer``); ``level2`` ...
    ``level5`` (strides 4 to 32) are aggregation trees of
    :class:`DLABottle2neck` blocks. For detection take ``out_indices=(2, 3, 4,
    5)`` (channels ``(128, 256, 512, 1024)`` in DLA-60).

    Args:
        arch (str, optional): ``'res2net_dla60'`` or ``'res2next_dla60'``; sets
            the architecture arguments left as None.
        depth (int): DLA depth (60). Defaults to 60.
        scales (int): Splits per block. Defaults to 4.
        base_width (int): Split width per group at 64 output channels (before
            the halving by the block expansion 2). Defaults to 28.
        groups (int): Cardinality of the 3x3 convs. Defaults to 1.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Levels (0 to 5) to return. Defaults to
            ``(5, )``.
        frozen_stages (int): Freeze ``base_layer`` and the levels up to this
            index (0 to 5); -1 freezes nothing. ``2`` freezes everything up to
            stride 4, as ``frozen_stages=1`` does for a ResNet.
        conv_cfg (dict, optional): Conv layer config.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        norm_eval (bool): Keep norm layers in eval mode during training.
        channels_last (bool, optional): Compute in channels_last: None (default)
            on CPU, True always, False never (see :class:`Res2Net`). Outputs
            come back in the input's memory format.
        init_cfg (dict or list[dict], optional): Initialization config.
            ``dict(type='Pretrained', checkpoint=PATH, prefix=...)`` loads
            timm / official / res2net_mm weights strictly (the official unused
            ``project`` layers and the classifier are dropped).
    """

    def __init__(self,
                 arch: Optional[str] = None,
                 depth: Optional[int] = None,
                 scales: Optional[int] = None,
                 base_width: Optional[int] = None,
                 groups: Optional[int] = None,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (5, ),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 channels_last: Optional[bool] = None,
                 init_cfg=DEFAULT_INIT_CFG):
        super().__init__(init_cfg=init_cfg)
        self._set_channels_last(channels_last)
        settings = resolve_arch(
            'Res2NetDLA', arch, DLA_DEPTHS, depth=depth, scales=scales,
            base_width=base_width, groups=groups)
        # frozen_stages counts levels from 0 (base_layer goes with level 0).
        self._check_outputs(out_indices, 6, frozen_stages, 5, unit='level')
        self.arch = arch
        self.depth = settings['depth']
        self.scales = settings['scales']
        self.base_width = settings['base_width']
        self.groups = settings['groups']
        spec = DLA_DEPTHS[self.depth]
        levels, channels = spec['levels'], spec['channels']
        self.out_indices = tuple(sorted(i % 6 for i in out_indices))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.out_channels = [channels[i] for i in self.out_indices]
        self.deploy = False

        self.base_layer = nn.Sequential(
            build_conv_layer(conv_cfg, in_channels, channels[0], 7,
                             padding=3, bias=False),
            build_norm_layer(norm_cfg, channels[0])[1],
            nn.ReLU(inplace=True))
        self.level0 = self._conv_level(channels[0], channels[0], levels[0], 1,
                                       conv_cfg, norm_cfg)
        self.level1 = self._conv_level(channels[0], channels[1], levels[1], 2,
                                       conv_cfg, norm_cfg)
        block_cfg = dict(scales=self.scales, base_width=self.base_width,
                         groups=self.groups)
        for i in range(2, 6):
            self.add_module(f'level{i}', DLATree(
                levels[i], channels[i - 1], channels[i], 2,
                level_root=i > 2, residual_root=spec['residual_root'],
                block_cfg=block_cfg, conv_cfg=conv_cfg, norm_cfg=norm_cfg))
        self._freeze_stages()

    @staticmethod
    def _conv_level(in_channels, out_channels, num_convs, stride, conv_cfg,
                    norm_cfg) -> nn.Sequential:
        layers = []
        for i in range(num_convs):
            layers += [
                build_conv_layer(conv_cfg, in_channels, out_channels, 3,
                                 stride=stride if i == 0 else 1, padding=1,
                                 bias=False),
                build_norm_layer(norm_cfg, out_channels)[1],
                nn.ReLU(inplace=True)
            ]
            in_channels = out_channels
        return nn.Sequential(*layers)

    def _frozen_modules(self) -> list:
        if self.frozen_stages < 0:
            return []
        return [self.base_layer] + [getattr(self, f'level{i}')
                                    for i in range(self.frozen_stages + 1)]

    def init_weights(self):
        if not self._init_from_pretrained():
            super().init_weights()

    def switch_to_deploy(self) -> 'Res2NetDLA':
        """Fold every BN into its conv for inference: the conv levels', the
        trees' projections and roots', and every block's (see
        :meth:`~res2net_mm.models.Bottle2neck.switch_to_deploy`). Outputs
        equal the eval-mode outputs up to float rounding; calling it twice
        does nothing.

        Returns:
            Res2NetDLA: ``self``.
        """
        if self.deploy:
            return self
        for name in ('base_layer', 'level0', 'level1'):
            setattr(self, name, fold_sequential(getattr(self, name)))
        for m in self.modules():
            if isinstance(m, DLATree) and isinstance(m.project, nn.Sequential):
                m.project = fold_sequential(m.project)
            elif isinstance(m, (DLARoot, Bottle2neck)):
                m.switch_to_deploy()
        self.deploy = True
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, restore = self._enter_layout(x)
        return self._run_stages(self.base_layer(x),
                                [f'level{i}' for i in range(6)], restore)
