"""The Res2Net bottleneck block: one implementation for every toolbox."""
import math
import warnings
from typing import Optional, Sequence

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer, build_plugin_layer
from mmengine.model import BaseModule
from torch import nn

from ..utils.torch_compat import exporting, has_forward_hooks
from .fusion import can_fold, fold_bn, fold_sequential, group_convs
from .hierarchy import (can_chain, chained_splits, grouped_stage_splits,
                        hierarchical_splits)
from .layers import DropPath, SELayer
from .variants import check_scales

PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')
STYLES = ('pytorch', 'caffe')
# Where a stage block pools its last split (the one without a 3x3 conv).
STAGE_POOL_MODES = ('always', 'strided')


def split_width(planes: int, base_width: int, groups: int = 1,
                base_channels: int = 64) -> int:
    """Channels of one split: ``floor(planes * base_width / 64) * groups``.

    64 is ``base_channels``, the planes of the first stage, so a scaled-down
    network keeps ``base_width`` as its first stage's split width (as mmdet).

    Res2NeXt multiplies by the cardinality and groups the 3x3 convs by it, as the
    official code does.
    """
    return int(math.floor(planes * base_width / base_channels)) * groups


def check_stage_pool(stage_pool: str) -> str:
    if stage_pool not in STAGE_POOL_MODES:
        raise ValueError(f'stage_pool must be one of {STAGE_POOL_MODES}, '
                         f'got {stage_pool!r}')
    return stage_pool


class Bottle2neck(BaseModule):
    """Res2Net bottleneck (Gao et al., TPAMI 2021).

    1x1 conv -> split into ``scales`` groups of ``width`` channels -> a hierarchy of
    3x3 convs, each one (but the first) fed the previous output plus its own split ->
    concatenate -> 1x1 conv, then the residual connection.

    The first block of a stage (``stage_block=True``) changes resolution and/or
    channels, so the splits cannot be chained: each 3x3 conv reads its own split only,
    and the last split, which has no conv, is average-pooled to the new resolution.
    The official code pools it even when the stride is 1 (AvgPool 3x3/1 smooths it);
    mmdet 3.3.0 skips the pool at stride 1 (``stage_pool='strided'``).

    Args:
        in_channels (int): Input channels.
        planes (int): Bottleneck channels; the block outputs ``planes * 4``.
        stride (int): Stride of the block: of the 3x3 convs (and of the last
            split's pool) in style ``'pytorch'``, of ``conv1`` in ``'caffe'``.
        dilation (int): Dilation of the 3x3 convs.
        downsample (nn.Module, optional): Shortcut projection. Defaults to None.
        style (str): ``'pytorch'`` or ``'caffe'``: where the stride sits, as in
            mmdet's and mmpretrain's bottlenecks. ``'caffe'`` strides the first
            1x1 conv and runs the 3x3 convs and the stage pool at stride 1.
            Defaults to ``'pytorch'``.
        expansion (int): Output channels per plane (``planes * expansion``);
            the split width does not depend on it. Defaults to 4.
        scales (int): Number of splits (``s`` in the paper). Defaults to 4.
        base_width (int): Split width at ``planes=64`` (``w``). Defaults to 26.
        groups (int): Cardinality of the grouped 3x3 convs (Res2NeXt).
        base_channels (int): Planes of the first stage; ``base_width`` is the
            split width there. Defaults to 64.
        stage_block (bool): First block of a stage (see above).
        stage_pool (str): ``'always'`` pools the last split of a stage block
            (official); ``'strided'`` only where its stride is not 1 (mmdet).
            Defaults to ``'always'``.
        pool_at_stride1 (bool, optional): Deprecated name of ``stage_pool``
            (True: ``'always'``, False: ``'strided'``).
        last_relu (bool): End with the ReLU after the residual addition.
            False leaves it to the caller (bL-Net merges two branches before
            it). Defaults to True.
        conv_cfg (dict, optional): Config of the convs.
        norm_cfg (dict): Config of the norm layers. Defaults to BN.
        dcn (dict, optional): Deformable conv config for the 3x3 convs (needs
            compiled mmcv ops). ``fallback_on_stride=True`` keeps plain convs
            where the stride is not 1.
        plugins (list[dict], optional): ``dict(cfg=..., position=...)`` with
            position in ``after_conv1``, ``after_conv2``, ``after_conv3``.
        se_ratio (int, optional): Add a Squeeze-and-Excitation module after
            the last norm with this reduction ratio. Defaults to None.
        drop_path_rate (float): Stochastic depth rate of the residual branch.
        with_cp (bool): Trade compute for memory with activation checkpointing.
        fast_path (bool): Allow the faster implementations of the split convs
            below. False runs the reference :meth:`_forward` only: bit-identical
            to per-split implementations such as mmdet's. Defaults to True.
        init_cfg (dict, optional): Initialization config.

    :meth:`_forward` is the reference computation. Its split convs have three
    implementations of one function, chosen in :meth:`_multi_scale` (see
    :mod:`res2net_mm.models.hierarchy`; proven equal by
    ``tests/models/test_fast_paths.py`` and ``test_hierarchy.py``):

    - stage blocks run their ``scales - 1`` independent split convs as ONE
      grouped conv and ONE BN, in training too (plain ``nn.Conv2d`` and
      ``nn.BatchNorm2d`` with a momentum, no hooks on them; not DCN, SyncBN,
      GN), with the state dict per split as before;
    - the other blocks train through ``ChainedSplits``, which keeps less for
      backward (the same conditions, plus bias-free convs and affine BNs
      with running statistics, eager mode without autocast);
    - else the per-split loop, :func:`~res2net_mm.models.hierarchy.
      hierarchical_splits`.

    The residual is added into the branch's output in place unless a hook or
    an ``after_conv3`` plugin could hold that tensor (:meth:`_may_add_in_place`).

    :meth:`switch_to_deploy` changes the structure instead: every BN folded
    into its conv, the ReLUs (and conv3's residual addition) carried by the
    convs, a stage block's split convs as one grouped conv; the forward then
    runs :meth:`_fused_forward`.
    """
    expansion = 4

    def __init__(self,
                 in_channels: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 expansion: int = 4,
                 scales: int = 4,
                 base_width: int = 26,
                 groups: int = 1,
                 base_channels: int = 64,
                 stage_block: bool = False,
                 stage_pool: str = 'always',
                 pool_at_stride1: Optional[bool] = None,
                 last_relu: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 dcn: Optional[dict] = None,
                 plugins: Optional[Sequence[dict]] = None,
                 se_ratio: Optional[int] = None,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 fast_path: bool = True,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        check_scales(scales)
        if style not in STYLES:
            raise ValueError(f'style must be one of {STYLES} (where the '
                             f'stride sits), got {style!r}')
        self.in_channels = in_channels
        self.planes = planes
        self.expansion = expansion
        self.out_channels = planes * expansion
        self.stride = stride
        self.style = style
        # caffe: conv1 downsamples, so the 3x3 convs and the pool see the new
        # resolution already.
        conv1_stride, conv2_stride = (stride, 1) if style == 'caffe' \
            else (1, stride)
        if pool_at_stride1 is not None:
            warnings.warn('pool_at_stride1 is deprecated: use stage_pool='
                          "'always' (True) or 'strided' (False)",
                          DeprecationWarning)
            stage_pool = 'always' if pool_at_stride1 else 'strided'
        self.stage_pool = check_stage_pool(stage_pool)
        self.scales = scales
        self.stage_block = stage_block
        self.last_relu = last_relu
        self.with_cp = with_cp
        self.fast_path = fast_path
        self.deploy = False
        self.width = width = self._split_width(planes, base_width, groups,
                                               base_channels)
        if width < 1:
            raise ValueError(
                f'base_width={base_width} gives splits of {width} channels '
                f'at planes={planes}; increase base_width')

        self.conv1 = build_conv_layer(
            conv_cfg, in_channels, width * scales, kernel_size=1,
            stride=conv1_stride, bias=False)
        self.norm1_name, norm1 = build_norm_layer(
            norm_cfg, width * scales, postfix=1)
        self.add_module(self.norm1_name, norm1)

        conv2_cfg = conv_cfg
        self.with_dcn = False
        if dcn is not None:
            dcn = dict(dcn)
            fallback_on_stride = dcn.pop('fallback_on_stride', False)
            if not (fallback_on_stride and conv2_stride != 1):
                if conv_cfg is not None:
                    raise ValueError('conv_cfg must be None when dcn is set')
                # Imported here so that the backbone needs compiled mmcv ops only
                # when deformable convs are asked for (mmcv-lite works otherwise).
                import mmcv.ops  # noqa: F401  registers DCN / DCNv2
                conv2_cfg = dcn
                self.with_dcn = True
        self.convs = nn.ModuleList(
            build_conv_layer(
                conv2_cfg,
                width,
                width,
                kernel_size=3,
                stride=conv2_stride,
                padding=dilation,
                dilation=dilation,
                groups=groups,
                bias=False) for _ in range(scales - 1))
        self.bns = nn.ModuleList(
            build_norm_layer(norm_cfg, width, postfix=i + 1)[1]
            for i in range(scales - 1))
        # The last split bypasses the 3x3 convs; in a stage block it must still
        # reach the new resolution.
        if stage_block and (conv2_stride != 1 or stage_pool == 'always'):
            self.pool = nn.AvgPool2d(
                kernel_size=3, stride=conv2_stride, padding=1)
        else:
            self.pool = None

        self.conv3 = build_conv_layer(
            conv_cfg, width * scales, self.out_channels, kernel_size=1,
            bias=False)
        self.norm3_name, norm3 = build_norm_layer(
            norm_cfg, self.out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)

        self.se = SELayer(self.out_channels, se_ratio) if se_ratio else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 \
            else nn.Identity()

        channels = dict(
            after_conv1=width * scales,
            after_conv2=width * scales,
            after_conv3=self.out_channels)
        self.plugin_names = {position: [] for position in PLUGIN_POSITIONS}
        for plugin in plugins or ():
            position = plugin['position']
            if position not in PLUGIN_POSITIONS:
                raise ValueError(f'plugin position must be one of '
                                 f'{PLUGIN_POSITIONS}, got {position!r}')
            name, layer = build_plugin_layer(
                plugin['cfg'],
                in_channels=channels[position],
                postfix=plugin.get('postfix', ''))
            if hasattr(self, name):
                raise ValueError(f'duplicate plugin name {name!r}: give each '
                                 f'plugin of one kind a distinct postfix')
            self.add_module(name, layer)
            self.plugin_names[position].append(name)

    def _split_width(self, planes: int, base_width: int, groups: int,
                     base_channels: int) -> int:
        return split_width(planes, base_width, groups, base_channels)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def forward(self, x: torch.Tensor,
                identity: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The block on ``x``; ``identity`` replaces the shortcut (DLA's trees
        compute it themselves)."""
        if self.deploy:
            return self._fused_forward(x, identity)
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, identity,
                                 use_reentrant=False)
        return self._forward(x, identity)

    def _forward(self, x: torch.Tensor,
                 identity: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The reference computation, top to bottom."""
        out = self.relu(self.norm1(self.conv1(x)))
        out = self._plugins(out, 'after_conv1')
        out = self._multi_scale(out)
        out = self._plugins(out, 'after_conv2')
        out = self.norm3(self.conv3(out))
        out = self._plugins(out, 'after_conv3')
        if self.se is not None:
            out = self.se(out)
        out = self.drop_path(out)
        if identity is None:
            identity = x if self.downsample is None else self.downsample(x)
        return self._add_identity(out, identity)

    def _multi_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The hierarchical split convs, by the fastest implementation that
        computes the same here (the one place that chooses)."""
        if self._can_group_stage():
            return grouped_stage_splits(x, self.width, self.convs, self.bns,
                                        self.pool)
        if self._can_chain_lean(x):
            return chained_splits(x, self.width, self.convs, self.bns)
        return hierarchical_splits(
            x, self.width, self.convs, self.bns, self.relu,
            chain=not self.stage_block, last=self.pool,
            contiguous=self.with_dcn)

    def _add_identity(self, out: torch.Tensor,
                      identity: torch.Tensor) -> torch.Tensor:
        if self._may_add_in_place():
            # A fresh output (a whole activation) costs more than the
            # addition itself.
            out += identity
        else:
            out = out + identity
        return self.relu(out) if self.last_relu else out

    def _plugins(self, x: torch.Tensor, position: str) -> torch.Tensor:
        for name in self.plugin_names[position]:
            x = getattr(self, name)(x)
        return x

    def _plain_split_layers(self) -> bool:
        """Whether the split convs and BNs are plain, alike and unhooked, so
        that they may run as one grouped conv (stage blocks) or through
        ``ChainedSplits`` (other blocks).

        Checked at every call (a few attribute reads), because models are
        converted after construction (e.g. ``convert_sync_batchnorm``).
        """
        if not self.fast_path or self.with_dcn:
            return False
        if has_forward_hooks([*self.convs, *self.bns]):
            # Hook-based tools (MAC counters, feature probes) expect every
            # split's modules to run.
            return False
        conv0, bn0 = self.convs[0], self.bns[0]
        for conv in self.convs:
            if type(conv) is not nn.Conv2d or conv.padding_mode != 'zeros':
                return False
        for bn in self.bns:
            # Exactly BatchNorm2d: SyncBN must stay per split (its statistics
            # are reduced across processes by its own forward).
            if type(bn) is not nn.BatchNorm2d or bn.momentum is None:
                return False
            if (bn.training != bn0.training or bn.eps != bn0.eps
                    or bn.momentum != bn0.momentum or bn.affine != bn0.affine
                    or bn.track_running_stats != bn0.track_running_stats):
                return False
        return conv0.bias is None or all(c.bias is not None
                                         for c in self.convs)

    def _can_group_stage(self) -> bool:
        """Whether the stage block's split convs may run as one grouped conv."""
        return self.stage_block and self._plain_split_layers()

    def _can_chain_lean(self, x: torch.Tensor) -> bool:
        """Whether the chained splits may run through ``ChainedSplits``: in
        eager training (it saves memory for backward only), without autocast
        (whose casts it would have to replay), with bias-free convs and
        affine BNs that track running statistics."""
        if self.stage_block or not torch.is_grad_enabled():
            return False
        if not can_chain(x.device.type) or exporting():
            return False
        if not (x.requires_grad or any(p.requires_grad
                                       for p in self.convs.parameters())
                or any(p.requires_grad for p in self.bns.parameters())):
            return False
        if not self._plain_split_layers():
            return False
        bn0 = self.bns[0]
        return (self.convs[0].bias is None and bn0.affine
                and bn0.track_running_stats)

    def _may_add_in_place(self) -> bool:
        """Whether the residual may be added into the branch's output: no
        forward hook can hold that tensor (it would see it change), and the
        layer that produced it does not keep it for backward (BN, GN and the
        SE gate keep their inputs only)."""
        if self.plugin_names['after_conv3']:
            return False
        last = [self.norm3, self.drop_path] + (
            [self.se] if self.se is not None else [])
        if has_forward_hooks(last):
            return False
        return self.se is not None or isinstance(
            self.norm3, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))

    def _fuses_tail(self) -> bool:
        """Whether deployed conv3 also adds the shortcut (and applies the
        last ReLU): nothing runs between them."""
        return self.se is None and not self.plugin_names['after_conv3']

    def _fused_forward(self, x: torch.Tensor,
                       identity: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
        """The deployed block (:meth:`switch_to_deploy`), top to bottom:
        each conv carries its folded BN and the ReLU after it."""
        out = self._plugins(self.conv1(x), 'after_conv1')
        if self.stage_block:  # one grouped conv over the convolved splits
            head, last = torch.split(
                out, [out.shape[1] - self.width, self.width], dim=1)
            out = torch.cat([self.convs[0](head), last if self.pool is None
                             else self.pool(last)], dim=1)
        else:
            out = hierarchical_splits(out, self.width, self.convs)
        out = self._plugins(out, 'after_conv2')
        if identity is None:
            identity = x if self.downsample is None else self.downsample(x)
        if self._fuses_tail():
            return self.conv3(out, identity)  # conv + bias + add (+ ReLU)
        out = self._plugins(self.conv3(out), 'after_conv3')
        if self.se is not None:
            out = self.se(out)
        return self._add_identity(out, identity)

    def _foldable(self) -> bool:
        pairs = [(self.conv1, self.norm1), (self.conv3, self.norm3),
                 *zip(self.convs, self.bns)]
        return not self.with_dcn and all(can_fold(c, n) for c, n in pairs)

    def switch_to_deploy(self) -> None:
        """Fold every BN of the block into its conv, for inference.

        ``conv1``, the split convs (one grouped conv in a stage block),
        ``conv3`` and the shortcut conv get the BN's scale in their weights and
        its shift as their bias, and carry the ReLU that follows; conv3 also
        adds the shortcut where nothing runs between them. The BNs become
        ``nn.Identity``. Outputs equal the eval-mode outputs up to float
        rounding. A block with a conv or norm that cannot be folded
        (deformable convs, GN, BN without running statistics) stays as it is.
        The state dict changes (biases appear, BN entries go): deploy models
        are for inference and export, not for saving as training
        checkpoints. Calling it twice does nothing the second time.
        """
        if self.deploy or not self._foldable():
            return
        self.conv1 = fold_bn(self.conv1, self.norm1, relu=True)
        self.add_module(self.norm1_name, nn.Identity())
        convs = [fold_bn(c, b, relu=True) for c, b in zip(self.convs, self.bns)]
        if self.stage_block:
            convs = [group_convs(convs)]
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(nn.Identity() for _ in convs)
        self.conv3 = fold_bn(self.conv3, self.norm3,
                             relu=self._fuses_tail() and self.last_relu)
        self.add_module(self.norm3_name, nn.Identity())
        if isinstance(self.downsample, nn.Sequential):
            self.downsample = fold_sequential(self.downsample)
        self.deploy = True
