"""Res2Net-DLA and Res2NeXt-DLA backbones (Deep Layer Aggregation with Res2Net
blocks, Gao et al., TPAMI 2021, Sec. 3.3; DLA: Yu et al., CVPR 2018).

State-dict names are timm's (``base_layer``, ``level0`` ... ``level5``,
``levelN.tree1...``, ``levelN.root``, ``levelN.project``), so timm's
``dla60_res2net`` / ``dla60_res2next`` weights load unchanged. The official
DLA checkpoints name things the same way but also carry ``project`` layers in
trees of more than one level, which their forward pass computes and never uses
(18 keys in DLA-60); :func:`dla_from_official` drops them.
"""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.logging import print_log
from torch import nn

from ..registry import MODELS
from .base import FreezableBackbone
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


class DLABottle2neck(nn.Module):
    """The Res2Net block as the DLA models use it.

    Not :class:`~res2net_mm.models.Bottle2neck`, because three things differ
    in the official Res2Net-DLA (and timm's ``DlaBottle2neck``): the expansion
    is 2, not 4 (the split width is ``floor(out * base_width / 64) * groups //
    2`` of the *output* channels); only strided blocks are 'stage' blocks
    (timm's rule; in DLA-60 every channel change is strided), and the
    shortcut comes from the enclosing tree (its max-pool + ``project``), not
    from the block.

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
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        width = (out_channels * base_width // 64) * groups // self.expansion
        self.width = width
        self.scales = scales
        self.stage_block = stride > 1
        self.conv1 = build_conv_layer(conv_cfg, in_channels, width * scales,
                                      1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, width * scales)[1]
        self.convs = nn.ModuleList(
            build_conv_layer(conv_cfg, width, width, 3, stride=stride,
                             padding=dilation, dilation=dilation,
                             groups=groups, bias=False)
            for _ in range(scales - 1))
        self.bns = nn.ModuleList(
            build_norm_layer(norm_cfg, width)[1] for _ in range(scales - 1))
        # count_include_pad=True as the official code and timm.
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) \
            if self.stage_block else None
        self.conv3 = build_conv_layer(conv_cfg, width * scales, out_channels,
                                      1, bias=False)
        self.bn3 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor,
                shortcut: Optional[torch.Tensor] = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = x
        out = self.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, 1)
        outs = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = splits[i] if i == 0 or self.stage_block else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(self.pool(splits[-1]) if self.pool is not None
                    else splits[-1])
        out = self.bn3(self.conv3(torch.cat(outs, 1)))
        return self.relu(out + shortcut)


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
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1,
                          layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg=init_cfg)
        self._set_channels_last(channels_last)
        settings = resolve_arch(
            'Res2NetDLA', dict(depth=60, scales=4, base_width=28, groups=1),
            arch, depth=depth, scales=scales, base_width=base_width,
            groups=groups)
        if settings['depth'] not in DLA_DEPTHS:
            raise KeyError(f'invalid depth {settings["depth"]} for Res2NetDLA'
                           f': valid depths are {sorted(DLA_DEPTHS)}')
        if not isinstance(settings['scales'], int) or settings['scales'] < 2:
            raise ValueError(f'scales must be an integer >= 2, got '
                             f'{settings["scales"]!r}')
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

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        for name in ['base_layer'] + [f'level{i}' for i in
                                      range(self.frozen_stages + 1)]:
            m = getattr(self, name)
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def init_weights(self):
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            load_dla_pretrained(self, self.init_cfg)
            self._is_init = True
            return
        super().init_weights()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, restore = self._enter_layout(x)
        x = self.base_layer(x)
        outs = []
        for i in range(6):
            x = getattr(self, f'level{i}')(x)
            if i in self.out_indices:
                outs.append(self._leave_layout(x, restore))
        return tuple(outs)


# ---- weights ----------------------------------------------------------------
_PROJECT = re.compile(r'^(.*\.)?project\.')


def dla_from_official(state: Mapping) -> Tuple[Dict, Dict[str, str]]:
    """Official / timm Res2Net-DLA weights -> res2net_mm names.

    Drops the ``project`` layers of trees whose first child is a tree (their
    output is never used; the official files carry them, timm's do not) and
    reshapes the 1x1-conv classifier ``fc.weight`` ``(N, C, 1, 1)`` to the
    linear ``(N, C)`` of :class:`Res2NetDLAClassifier`. Decided by names only:
    a tree's project is used iff the tree has a block ``tree1.conv1``.

    Returns:
        tuple[dict, dict]: The weights and ``{dropped key: reason}``.
    """
    out, dropped = {}, {}
    for key, value in state.items():
        m = _PROJECT.match(key)
        if m:
            tree = m.group(1) or ''
            if not any(k.startswith(f'{tree}tree1.conv1.') for k in state):
                dropped[key] = ('unused project layer of a multi-level tree '
                                '(official DLA)')
                continue
        if key == 'fc.weight' and value.dim() == 4:
            value = value.flatten(1)
        out[key] = value
    return out, dropped


def dla_to_timm(state: Mapping) -> Dict:
    """res2net_mm DLA weights (classifier included) -> timm names/shapes."""
    out = dict(state)
    if 'fc.weight' in out and out['fc.weight'].dim() == 2:
        out['fc.weight'] = out['fc.weight'][:, :, None, None]
    return out


def _download(url: str) -> str:
    """Fetch a URL once into torch's hub cache (as ``load_state_dict_from_url``
    does; its download goes to a temporary file that is then moved)."""
    import os
    from urllib.parse import urlparse

    from torch.hub import download_url_to_file, get_dir
    folder = os.path.join(get_dir(), 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(urlparse(url).path))
    if not os.path.exists(path):
        print_log(f'downloading {url} to {path}', logger='current')
        download_url_to_file(url, path, progress=False)
    return path


def load_dla_pretrained(model: nn.Module, init_cfg: dict) -> Dict:
    """``init_cfg=dict(type='Pretrained', ...)`` for :class:`Res2NetDLA`.

    The Res2Net loader (:mod:`res2net_mm.converters.loading`) detects a
    ResNet-style layout and cannot read DLA trees, so DLA has this one: any
    file :func:`~res2net_mm.converters.reading.read_checkpoint` reads
    (PyTorch, safetensors), optional ``prefix``, official/timm names, strict.

    Args:
        model (nn.Module): The backbone.
        init_cfg (dict): ``checkpoint`` (a path, an http(s) / file URL
            fetched once into torch's hub cache, or ``res2net_mm://NAME``)
            and optionally ``prefix``,
            ``map_location``, ``trust`` (see ``read_checkpoint``).

    Returns:
        dict: ``{dropped key: reason}``.

    Raises:
        KeyError: Unknown init_cfg keys.
        RuntimeError: When the weights do not fit, listing the keys.
    """
    from ..converters.keymaps import strip_prefix
    from ..converters.reading import read_checkpoint
    known = {'type', 'checkpoint', 'prefix', 'map_location', 'trust'}
    unknown = set(init_cfg) - known
    if unknown:
        raise KeyError(f'unknown Pretrained init_cfg keys {sorted(unknown)} '
                       f'for Res2NetDLA; valid: {sorted(known)}')
    path = init_cfg.get('checkpoint')
    if not path:
        raise ValueError("init_cfg type='Pretrained' needs checkpoint=PATH")
    if str(path).startswith('res2net_mm://'):  # a published file, verified
        from ..converters.download import resolve_uri
        path = resolve_uri(path)
    elif re.match(r'^(https?|file)://', str(path)):
        path = _download(str(path))
    state, _ = read_checkpoint(
        path, trust=init_cfg.get('trust', False),
        map_location=init_cfg.get('map_location', 'cpu') or 'cpu')
    prefix = init_cfg.get('prefix')
    if prefix:
        state = strip_prefix(state, prefix)
        if not state:
            raise RuntimeError(f'{path}: no keys start with prefix {prefix!r}')
    native, dropped = dla_from_official(state)
    for key in [k for k in native if k.startswith('fc.')]:
        dropped[key] = 'classifier (a backbone has none)'
        del native[key]
    own = model.state_dict()
    missing = [k for k in own if k not in native]
    unexpected = [k for k in native if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(own[k].shape)}' for k, v in native.items()
                  if k in own and v.shape != own[k].shape]
    if missing or unexpected or mismatched:
        lines = ([f'  missing: {k}' for k in missing] +
                 [f'  unexpected: {k}' for k in unexpected] +
                 [f'  {m}' for m in mismatched])
        raise RuntimeError(
            f'{path}: weights do not fit this Res2NetDLA ({len(missing)} '
            f'missing, {len(unexpected)} unexpected, {len(mismatched)} '
            f'mis-shaped keys); build the matching arch '
            f'({", ".join(TIMM_NAMES)}) or check the file:\n' +
            '\n'.join(lines[:20]))
    model.load_state_dict(native, strict=True)
    if dropped:
        print_log(f'{path}: dropped {len(dropped)} keys: '
                  f'{", ".join(sorted(dropped)[:6])} ...', logger='current')
    return dropped
