"""The Res2Net bottleneck block: one implementation for every toolbox."""
import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer, build_plugin_layer
from mmengine.model import BaseModule
from torch import nn

from ..deploy.ops import conv_act, exporting
from .hierarchy import can_chain, chained_splits
from .layers import DropPath, SELayer

PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')
STYLES = ('pytorch', 'caffe')


def split_width(planes: int, base_width: int, groups: int = 1,
                base_channels: int = 64) -> int:
    """Channels of one split: ``floor(planes * base_width / 64) * groups``.

    64 is ``base_channels``, the planes of the first stage, so a scaled-down
    network keeps ``base_width`` as its first stage's split width (as mmdet).

    Res2NeXt multiplies by the cardinality and groups the 3x3 convs by it, as the
    official code does.
    """
    return int(math.floor(planes * base_width / base_channels)) * groups


class Bottle2neck(BaseModule):
    """Res2Net bottleneck (Gao et al., TPAMI 2021).

    1x1 conv -> split into ``scales`` groups of ``width`` channels -> a hierarchy of
    3x3 convs, each one (but the first) fed the previous output plus its own split ->
    concatenate -> 1x1 conv, then the residual connection.

    The first block of a stage (``stage_block=True``) changes resolution and/or
    channels, so the splits cannot be chained: each 3x3 conv reads its own split only,
    and the last split, which has no conv, is average-pooled to the new resolution.
    The official code pools it even when the stride is 1 (AvgPool 3x3/1 smooths it);
    mmdet 3.3.0 skips the pool at stride 1 (``pool_at_stride1=False``).

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
        pool_at_stride1 (bool): Pool the last split of a stage block whose stride
            is 1 (official behaviour). Defaults to True.
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
        fast_path (bool): Allow the grouped stage conv below. Defaults to True.
        init_cfg (dict, optional): Initialization config.

    Fast paths (same values as the plain per-split path; see
    ``tests/models/test_fast_paths.py``):

    - In a stage block the ``scales - 1`` 3x3 convs read disjoint splits, so
      they run as ONE grouped conv (``groups * (scales - 1)`` groups) whose
      weight is the concatenation of ``convs[i].weight``, followed by ONE batch
      norm over the concatenated ``bns[i]`` parameters and statistics (BN is
      per channel, so this is the same computation, in training too; the
      updated running statistics are written back to each ``bns[i]``). The
      modules and the state dict stay per split, so every checkpoint format
      loads unchanged. It applies to plain ``nn.Conv2d`` / ``nn.BatchNorm2d``
      (not DCN, SyncBN, GN or ``momentum=None``); set ``fast_path=False`` to
      force the per-split path.
    - In the other blocks, training runs the chained split convs through
      :class:`~res2net_mm.models.hierarchy.ChainedSplits`: the same kernels,
      forward and backward, but the ReLU outputs and the conv inputs are not
      kept for backward a second time (same conditions, plus bias-free convs
      and affine BNs with running statistics; eager mode without autocast).
    - The residual is added into the branch's output in place, unless a
      forward hook or an ``after_conv3`` plugin could hold that tensor.
    - After :meth:`switch_to_deploy` every BN is folded into its conv, the
      stage convs are one grouped conv, and on CPU each conv (shortcut
      included) runs as one oneDNN kernel with its bias, the residual
      addition and the ReLU, on a weight reordered for oneDNN once (see
      :mod:`res2net_mm.deploy.ops`).
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
                 pool_at_stride1: bool = True,
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
        if scales < 2:
            raise ValueError(
                f'scales must be >= 2 (scales=1 is a plain ResNet), got {scales}')
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
        self.scales = scales
        self.stage_block = stage_block
        self.with_cp = with_cp
        # Run the stage block's split convs as one grouped conv when possible.
        self.fast_path = fast_path
        self.deploy = False
        self.width = width = split_width(planes, base_width, groups,
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
        if stage_block and (conv2_stride != 1 or pool_at_stride1):
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

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def _plugins(self, x: torch.Tensor, position: str) -> torch.Tensor:
        for name in self.plugin_names[position]:
            x = getattr(self, name)(x)
        return x

    def _conv_norm_act(self, x: torch.Tensor, conv: nn.Module,
                       norm: nn.Module, act: bool = True) -> torch.Tensor:
        if isinstance(norm, nn.Identity):  # folded into the conv's bias
            return conv_act(x, conv, relu=act)
        out = norm(conv(x))
        return self.relu(out) if act else out

    def _plain_split_layers(self) -> bool:
        """Whether the split convs and BNs are plain, alike and unhooked, so
        that they may run as one grouped conv (stage blocks) or through
        :class:`~res2net_mm.models.hierarchy.ChainedSplits` (other blocks).

        Checked at every call (a few attribute reads), because models are
        converted after construction (e.g. ``convert_sync_batchnorm``).
        """
        if not self.fast_path or self.with_dcn or self.deploy:
            return False
        if _has_hooks(self.convs) or _has_hooks(self.bns):
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
        if not self.stage_block:
            return False
        if self.deploy:
            return self.fast_path and not self.with_dcn and len(
                self.convs) == 1 and isinstance(self.bns[0], nn.Identity)
        return self._plain_split_layers()

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

    def _grouped_stage_convs(self, x: torch.Tensor) -> torch.Tensor:
        """The ``scales - 1`` split convs + BNs + ReLU of a stage block at once.

        ``torch.cat`` of the small per-split weights is cheap next to the
        activations and keeps the per-split parameters the only ones (the
        optimizer, the state dict and every converter see them unchanged);
        autograd splits the gradient back to each of them.
        """
        conv0, bn0 = self.convs[0], self.bns[0]
        n = self.scales - 1
        weight = torch.cat([c.weight for c in self.convs])
        bias = None if conv0.bias is None else torch.cat(
            [c.bias for c in self.convs])
        out = F.conv2d(x, weight, bias, conv0.stride, conv0.padding,
                       conv0.dilation, conv0.groups * n)
        tracking = bn0.track_running_stats
        if tracking:
            mean = torch.cat([bn.running_mean for bn in self.bns])
            var = torch.cat([bn.running_var for bn in self.bns])
        else:
            mean = var = None
        affine_w = torch.cat([bn.weight for bn in self.bns]) \
            if bn0.affine else None
        affine_b = torch.cat([bn.bias for bn in self.bns]) \
            if bn0.affine else None
        use_batch_stats = bn0.training or not tracking
        out = F.batch_norm(out, mean, var, affine_w, affine_b,
                           use_batch_stats, bn0.momentum, bn0.eps)
        if bn0.training and tracking:
            # F.batch_norm updated the concatenated copies; hand each split's
            # slice back to its own BN, as its own forward would have.
            with torch.no_grad():
                for i, bn in enumerate(self.bns):
                    sl = slice(i * self.width, (i + 1) * self.width)
                    bn.running_mean.copy_(mean[sl])
                    bn.running_var.copy_(var[sl])
                    bn.num_batches_tracked.add_(1)
        return self.relu(out)

    def _multi_scale(self, x: torch.Tensor) -> torch.Tensor:
        n = self.scales - 1
        if self._can_group_stage():
            # One split into two views: its backward is one concatenation of
            # the two gradients (two slices would each scatter theirs into
            # a zero-filled copy of the whole input, then add them).
            head, last = torch.split(x, [n * self.width, self.width], dim=1)
            if self.deploy:
                out = conv_act(head, self.convs[0], relu=True)
            else:
                out = self._grouped_stage_convs(head)
            return torch.cat([out, self.pool(last) if self.pool is not None
                              else last], dim=1)
        if self._can_chain_lean(x):
            return chained_splits(x, self.width, self.convs, self.bns)
        splits = torch.split(x, self.width, dim=1)
        outs: List[torch.Tensor] = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i > 0:
                # Chain: each split sees the previous output, growing the
                # receptive field; stage blocks cannot (shapes differ).
                sp = splits[i] if self.stage_block else sp + splits[i]
            if self.with_dcn:
                sp = sp.contiguous()  # mmcv's deformable conv needs it
            sp = self._conv_norm_act(sp, conv, bn)
            outs.append(sp)
        last = splits[-1]
        outs.append(self.pool(last) if self.pool is not None else last)
        # One concatenation per block, not one per split (O(scales) copies).
        return torch.cat(outs, dim=1)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        """The block without its final ReLU (``branch + shortcut``)."""
        out = self._conv_norm_act(x, self.conv1, self.norm1)
        out = self._plugins(out, 'after_conv1')
        out = self._multi_scale(out)
        out = self._plugins(out, 'after_conv2')
        identity = x if self.downsample is None else self._shortcut(x)
        if (isinstance(self.norm3, nn.Identity)
                and not self.plugin_names['after_conv3']
                and self.se is None
                and (not self.training or isinstance(self.drop_path,
                                                     nn.Identity))):
            # conv3 + bias + shortcut + ReLU as one kernel where available.
            return conv_act(out, self.conv3, relu=True, residual=identity)
        out = self._conv_norm_act(out, self.conv3, self.norm3, act=False)
        out = self._plugins(out, 'after_conv3')
        if self.se is not None:
            out = self.se(out)
        out = self.drop_path(out)
        if self._may_add_in_place():
            # A fresh output (25 MB per stage-1 block at batch 8) costs more
            # than the addition itself: the out-of-place add took 3x as long
            # in a CPU profile, about 4% of an eval pass.
            out += identity
            return self.relu(out)  # in place too
        return self.relu(out + identity)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.deploy or not isinstance(self.downsample, nn.Sequential):
            return self.downsample(x)
        for layer in self.downsample:  # its conv carries the folded BN
            x = conv_act(x, layer, relu=False) if type(layer) is nn.Conv2d \
                else layer(x)
        return x

    def _may_add_in_place(self) -> bool:
        """Whether the residual may be added into the branch's output: no
        forward hook can hold that tensor (it would see it change), and the
        layer that produced it does not keep it for backward (BN, GN and the
        SE gate keep their inputs only)."""
        if self.plugin_names['after_conv3']:
            return False
        last = [self.norm3, self.drop_path] + (
            [self.se] if self.se is not None else [])
        if _has_hooks(last):
            return False
        return self.se is not None or isinstance(
            self.norm3, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._residual, x, use_reentrant=False)
        return self._residual(x)

    def switch_to_deploy(self) -> None:
        """Fold every BN of the block into its conv, for inference.

        ``conv1``, the split convs (one grouped conv in a stage block),
        ``conv3`` and the shortcut conv get the BN's scale in their weights and
        its shift as their bias; the BNs become ``nn.Identity``. Outputs equal
        the eval-mode outputs up to float rounding. Pairs that cannot be
        folded (deformable convs, GN, BN without running statistics) stay as
        they are. The state dict changes (biases appear, BN entries go):
        deploy models are for inference and export, not for saving as
        training checkpoints. Calling it twice does nothing the second time.
        """
        from ..deploy.fuse import fold_pair, group_convs  # late: no cycle
        if self.deploy:
            return
        grouped = self._can_group_stage()
        conv1, norm1 = fold_pair(self.conv1, self.norm1)
        self.conv1 = conv1
        self.add_module(self.norm1_name, norm1)
        pairs = [fold_pair(c, b) for c, b in zip(self.convs, self.bns)]
        if grouped and all(isinstance(b, nn.Identity) for _, b in pairs):
            pairs = [(group_convs([c for c, _ in pairs]), nn.Identity())]
        self.convs = nn.ModuleList(c for c, _ in pairs)
        self.bns = nn.ModuleList(b for _, b in pairs)
        conv3, norm3 = fold_pair(self.conv3, self.norm3)
        self.conv3 = conv3
        self.add_module(self.norm3_name, norm3)
        if self.downsample is not None:
            self.downsample = _fold_shortcut(self.downsample)
        self.deploy = True


def _has_hooks(modules: Sequence[nn.Module]) -> bool:
    from torch.nn.modules import module as _module
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _fold_shortcut(shortcut: nn.Module) -> nn.Module:
    """Fold the BN that follows the conv of a ``Sequential`` shortcut."""
    from ..deploy.fuse import fold_pair
    if not isinstance(shortcut, nn.Sequential):
        return shortcut
    layers = list(shortcut)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.Conv2d) and isinstance(
                layers[i + 1], nn.modules.batchnorm._BatchNorm):
            layers[i], layers[i + 1] = fold_pair(layers[i], layers[i + 1])
    # Same indices as before (downsample.0/.1/.2 keep their meaning).
    return nn.Sequential(*layers)
