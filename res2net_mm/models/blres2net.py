"""bLRes2Net: Big-Little Net with Res2Net blocks.

The Res2Net paper (Gao et al., TPAMI 2021, Sec. 3.3 and 4.1, Table 1: top-1 /
top-5 error 21.68 / 6.00) takes the PyTorch bLResNet-50 of Big-Little Net
(Chen et al., ICLR 2019; alpha = 2, beta = 4) and "only replaces the original
bottleneck block with the proposed Res2Net module". No code of bLRes2Net was
published; this is that network built from the two papers and the layout of
bLResNet (stem, bL-modules, ResNet last stage).

A bL-module of ``n`` blocks has two branches fed the same input:
* Big: ``n - 1`` blocks at half resolution (the first one strided), with the
  full channel count; its last block has no final ReLU.
* Little: ``max(1, n // beta - 1)`` blocks at full resolution with
  ``1 / alpha`` of the channels, then a 1x1 conv + BN back to full width.
The big output is upsampled (nearest) to the little one, they are added, and a
ReLU and one more block (``fusion``, carrying the module's stride) follow.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model.weight_init import constant_init
from torch import nn

from ..registry import MODELS
from .base import FreezableBackbone
from .bottle2neck import Bottle2neck
from .variants import resolve_arch

# Blocks per stage, as bLResNet (the little branch takes blocks // beta - 1).
BL_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (4, 8, 18, 3), 152: (5, 12, 30, 3)}


class BLBottle2neck(Bottle2neck):
    """:class:`Bottle2neck` whose final ReLU can be left out.

    bL-Net merges the big and little branches as ``relu(big + little)``, so
    the big branch's last block ends before its ReLU (``last_relu=False``).
    Such a block runs the plain Res2Net computation below (Bottle2neck's own
    forward applies the ReLU inside its fused fast paths); every other block
    is an unchanged Bottle2neck.
    """

    def __init__(self, *args, last_relu: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_relu = last_relu

    def _pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        splits = torch.split(out, self.width, dim=1)
        outs = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i > 0:
                sp = splits[i] if self.stage_block else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        outs.append(self.pool(splits[-1]) if self.pool is not None
                    else splits[-1])
        out = self.norm3(self.conv3(torch.cat(outs, dim=1)))
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.drop_path(out) + identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.last_relu:
            return super().forward(x)
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._pre_activation, x, use_reentrant=False)
        return self._pre_activation(x)

    def switch_to_deploy(self) -> None:
        # Folding may merge the split convs into one grouped conv, which
        # _pre_activation does not run; these few blocks stay unfolded.
        if self.last_relu:
            super().switch_to_deploy()


class BLModule(nn.Module):
    """One bL-module (see the module docstring).

    Args:
        make_branch (callable): ``make_branch(in_ch, out_ch, blocks, stride,
            last_relu)`` returns an ``nn.Sequential`` of blocks.
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        blocks (int): Blocks of the equivalent ResNet stage.
        alpha (int): Channel ratio big / little.
        beta (int): Depth ratio big / little.
        stride (int): Stride of the fusion block.
        norm_cfg (dict): Norm config of the little branch's expansion.
        conv_cfg (dict, optional): Conv config.
    """

    def __init__(self, make_branch, in_channels: int, out_channels: int,
                 blocks: int, alpha: int, beta: int, stride: int,
                 norm_cfg: dict, conv_cfg: Optional[dict] = None):
        super().__init__()
        little_channels = out_channels // alpha
        self.big = make_branch(in_channels, out_channels, blocks - 1, 2,
                               last_relu=False)
        self.little = make_branch(in_channels, little_channels,
                                  max(1, blocks // beta - 1), 1)
        self.little_e = nn.Sequential(
            build_conv_layer(conv_cfg, little_channels, out_channels, 1,
                             bias=False),
            build_norm_layer(norm_cfg, out_channels)[1])
        self.fusion = make_branch(out_channels, out_channels, 1, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = self.big(x)
        little = self.little_e(self.little(x))
        big = F.interpolate(big, size=little.shape[2:], mode='nearest')
        return self.fusion(self.relu(big + little))


@MODELS.register_module()
class BLRes2Net(FreezableBackbone):
    """bLRes2Net backbone (Big-Little Net with Res2Net blocks).

    Stages: ``layer1`` to ``layer3`` are bL-modules, ``layer4`` a plain Res2Net
    stage. Output strides are 8, 16, 16, 32 (bLResNet keeps layer3 at the
    resolution of layer2) with channels 256, 512, 1024, 2048.

    Args:
        arch (str, optional): ``'blres2net50'``; sets the architecture
            arguments left as None.
        depth (int): 50, 101 or 152. Defaults to 50.
        scales (int): Splits per Res2Net block. Defaults to 4.
        base_width (int): Split width at 64 planes. Defaults to 26.
        groups (int): Cardinality of the 3x3 convs. Defaults to 1.
        alpha (int): Channel ratio of the big to the little branch.
            Defaults to 2.
        beta (int): Depth ratio of the big to the little branch.
            Defaults to 4.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages (0 to 3) to return.
        frozen_stages (int): Freeze the stem (0) and stages up to this index
            (1-based); -1 freezes nothing.
        conv_cfg (dict, optional): Conv layer config.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        norm_eval (bool): Keep norm layers in eval mode during training.
        with_cp (bool): Activation checkpointing in every block.
        channels_last (bool, optional): Compute in channels_last: None (default)
            on CPU, True always, False never (see :class:`Res2Net`). Outputs
            come back in the input's memory format.
        zero_init_residual (bool): Zero the last norm of every block at init
            (as bLResNet does). Defaults to True.
        init_cfg (dict or list[dict], optional): Initialization config.
    """
    block = BLBottle2neck

    def __init__(self,
                 arch: Optional[str] = None,
                 depth: Optional[int] = None,
                 scales: Optional[int] = None,
                 base_width: Optional[int] = None,
                 groups: Optional[int] = None,
                 alpha: int = 2,
                 beta: int = 4,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: Optional[bool] = None,
                 zero_init_residual: bool = True,
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1,
                          layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg=init_cfg)
        self._set_channels_last(channels_last)
        settings = resolve_arch(
            'bLRes2Net', dict(depth=50, scales=4, base_width=26, groups=1),
            arch, depth=depth, scales=scales, base_width=base_width,
            groups=groups)
        if settings['depth'] not in BL_STAGE_BLOCKS:
            raise KeyError(f'invalid depth {settings["depth"]} for bLRes2Net: '
                           f'valid depths are {sorted(BL_STAGE_BLOCKS)}')
        if alpha < 1 or beta < 1:
            raise ValueError(f'alpha and beta must be >= 1, got {alpha} and '
                             f'{beta}')
        self._check_outputs(out_indices, 4, frozen_stages, 4)
        self.arch = arch
        self.depth = settings['depth']
        self.scales = settings['scales']
        self.base_width = settings['base_width']
        self.groups = settings['groups']
        self.alpha, self.beta = alpha, beta
        self.out_indices = tuple(sorted(i % 4 for i in out_indices))
        self.frozen_stages = frozen_stages
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual

        self._make_stem(in_channels, 64)
        blocks = BL_STAGE_BLOCKS[self.depth]
        widths = [64 * 4, 128 * 4, 256 * 4, 512 * 4]
        in_ch = 64
        for i, stride in enumerate((2, 2, 1)):
            self.add_module(f'layer{i + 1}', BLModule(
                self._make_branch, in_ch, widths[i], blocks[i], alpha, beta,
                stride, norm_cfg, conv_cfg))
            in_ch = widths[i]
        self.layer4 = self._make_branch(in_ch, widths[3], blocks[3], 2)
        self.out_channels = [widths[i] for i in self.out_indices]
        self._freeze_stages()

    def _make_stem(self, in_channels: int, channels: int):
        """7x7/2 conv, then a big (3x3/2) and a little (3x3, 3x3/2, 1x1) path
        at half the channels, added, and a 1x1 conv: output stride 4."""
        conv, norm = self.conv_cfg, self.norm_cfg
        little = channels // self.alpha

        def bn(c):
            return build_norm_layer(norm, c)[1]

        self.conv1 = build_conv_layer(conv, in_channels, channels, 7, stride=2,
                                      padding=3, bias=False)
        self.bn1 = bn(channels)
        self.b_conv0 = build_conv_layer(conv, channels, channels, 3, stride=2,
                                        padding=1, bias=False)
        self.bn_b0 = bn(channels)
        self.l_conv0 = build_conv_layer(conv, channels, little, 3, padding=1,
                                        bias=False)
        self.bn_l0 = bn(little)
        self.l_conv1 = build_conv_layer(conv, little, little, 3, stride=2,
                                        padding=1, bias=False)
        self.bn_l1 = bn(little)
        self.l_conv2 = build_conv_layer(conv, little, channels, 1, bias=False)
        self.bn_l2 = bn(channels)
        self.bl_init = build_conv_layer(conv, channels, channels, 1,
                                        bias=False)
        self.bn_bl_init = bn(channels)
        self.relu = nn.ReLU(inplace=True)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        big = self.bn_b0(self.b_conv0(x))
        little = self.relu(self.bn_l0(self.l_conv0(x)))
        little = self.relu(self.bn_l1(self.l_conv1(little)))
        little = self.bn_l2(self.l_conv2(little))
        x = self.relu(big + little)
        return self.relu(self.bn_bl_init(self.bl_init(x)))

    def _make_branch(self, in_ch: int, out_ch: int, num_blocks: int,
                     stride: int = 1, last_relu: bool = True) -> nn.Sequential:
        """``num_blocks`` Res2Net blocks from ``in_ch`` to ``out_ch`` channels.

        bLResNet's shortcut: AvgPool 3x3/2 (pad 1) when strided, then a 1x1
        conv + BN when the channels change. The first block is a Res2Net
        'stage' block when it changes resolution or channels (for a ResNet
        stage that is the official rule: its first block always does).
        """
        shortcut = []
        if stride != 1:
            shortcut.append(nn.AvgPool2d(3, stride=2, padding=1))
        if in_ch != out_ch:
            shortcut += [
                build_conv_layer(self.conv_cfg, in_ch, out_ch, 1, bias=False),
                build_norm_layer(self.norm_cfg, out_ch)[1]
            ]
        planes = out_ch // self.block.expansion
        layers = []
        for j in range(num_blocks):
            first = j == 0
            layers.append(self.block(
                in_ch if first else out_ch,
                planes,
                stride=stride if first else 1,
                downsample=nn.Sequential(*shortcut) if first and shortcut
                else None,
                scales=self.scales,
                base_width=self.base_width,
                groups=self.groups,
                stage_block=first and bool(shortcut),
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg,
                with_cp=self.with_cp,
                # The big branch ends before its ReLU: the merge applies it.
                last_relu=last_relu or j < num_blocks - 1))
        return nn.Sequential(*layers)

    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            for name, m in self.named_children():
                if not name.startswith('layer'):
                    m.eval()
                    for param in m.parameters():
                        param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            m = getattr(self, f'layer{i}')
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def init_weights(self):
        super().init_weights()
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            return  # mmengine loaded the weights (no official ones exist)
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottle2neck):
                    constant_init(m.norm3, 0)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, restore = self._enter_layout(x)
        x = self._stem(x)
        outs = []
        for i in range(4):
            x = getattr(self, f'layer{i + 1}')(x)
            if i in self.out_indices:
                outs.append(self._leave_layout(x, restore))
        return tuple(outs)
