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
from mmcv.cnn import build_conv_layer, build_norm_layer
from torch import nn

from ..registry import MODELS
from .base import DEFAULT_INIT_CFG, FreezableBackbone
from .bottle2neck import Bottle2neck
from .fusion import fold_pair, fold_sequential
from .variants import resolve_arch

# Blocks per stage, as bLResNet (the little branch takes blocks // beta - 1).
BL_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (4, 8, 18, 3), 152: (5, 12, 30, 3)}


# bL-Net merges the big and little branches as ``relu(big + little)``, so the
# big branch's last block leaves out its final ReLU (``last_relu=False``);
# otherwise these are plain Res2Net blocks. The name stays for existing code.
BLBottle2neck = Bottle2neck


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
    block = Bottle2neck
    # (conv, norm) pairs of the stem, in the order _stem runs them.
    _STEM_PAIRS = (('conv1', 'bn1'), ('b_conv0', 'bn_b0'), ('l_conv0', 'bn_l0'),
                   ('l_conv1', 'bn_l1'), ('l_conv2', 'bn_l2'),
                   ('bl_init', 'bn_bl_init'))

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
                 init_cfg=DEFAULT_INIT_CFG):
        super().__init__(init_cfg=init_cfg)
        self._set_channels_last(channels_last)
        settings = resolve_arch(
            'bLRes2Net', arch, BL_STAGE_BLOCKS, depth=depth, scales=scales,
            base_width=base_width, groups=groups)
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
        self.deploy = False

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

    def _frozen_modules(self) -> list:
        stem = [m for name, m in self.named_children()
                if not name.startswith('layer')] \
            if self.frozen_stages >= 0 else []
        return stem + [getattr(self, f'layer{i}')
                       for i in range(1, self.frozen_stages + 1)]

    def init_weights(self):
        super().init_weights()
        if (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            return  # mmengine loaded the weights (no official ones exist)
        if self.zero_init_residual:
            self._zero_init_residual()

    def switch_to_deploy(self) -> 'BLRes2Net':
        """Fold every BN into its conv for inference: the stem's, the little
        branches' expansions and every block's (see
        :meth:`Bottle2neck.switch_to_deploy`). Outputs equal the eval-mode
        outputs up to float rounding; calling it twice does nothing.

        Returns:
            BLRes2Net: ``self``.
        """
        if self.deploy:
            return self
        for conv, norm in self._STEM_PAIRS:
            folded, identity = fold_pair(getattr(self, conv),
                                         getattr(self, norm))
            setattr(self, conv, folded)
            setattr(self, norm, identity)
        for m in self.modules():
            if isinstance(m, BLModule):
                m.little_e = fold_sequential(m.little_e)
            elif isinstance(m, Bottle2neck):
                m.switch_to_deploy()
        self.deploy = True
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, restore = self._enter_layout(x)
        return self._run_stages(self._stem(x), [f'layer{i}' for i in
                                                range(1, 5)], restore)
