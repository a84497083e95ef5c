"""The Res2Net backbone (v1, v1b/v1d, Res2NeXt, SE-Res2Net) for mmpretrain,
mmdet and mmseg."""
import difflib
import inspect
import warnings
from typing import Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model.weight_init import constant_init
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import nn

from ..registry import MODELS, get_weight_loader
from .base import DEFAULT_INIT_CFG, FreezableBackbone
from .bottle2neck import (PLUGIN_POSITIONS, STYLES, Bottle2neck,
                         check_stage_pool)
from .fusion import can_fold, fold_bn, fold_sequential
from .variants import resolve_arch

STAGE_BLOCKS = {
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}

# Arguments of the toolboxes' other ResNet-family backbones (mmdet, mmseg,
# mmpretrain) that have no meaning for Res2Net, and why: a config swapped to
# Res2Net with one of them would silently train another network.
_RESNEST = 'a ResNeSt argument (split attention)'
_TRIDENT = ('a TridentNet (TridentResNet) argument; Res2Net blocks have one '
            'branch (set the dilation of each stage with dilations)')
_DETECTORS = ('a DetectoRS_ResNet argument (switchable atrous convs, recursive '
              'feature pyramid), which Res2Net blocks do not implement')
NOT_RES2NET_ARGS = dict(
    radix=_RESNEST + "; Res2Net's multi-scale split is set by scales",
    reduction_factor=_RESNEST + "; Res2Net's channel attention is SE, set by "
    'se_ratio',
    avg_down_stride=_RESNEST + "; Res2Net's stage blocks downsample in their "
    '3x3 convs and stage pool (style, stage_pool) and, with avg_down, in the '
    'shortcut',
    num_branch=_TRIDENT,
    test_branch_idx=_TRIDENT,
    trident_dilations=_TRIDENT,
    sac=_DETECTORS,
    stage_with_sac=_DETECTORS,
    rfp_inplanes=_DETECTORS,
    output_img=_DETECTORS,
)

@MODELS.register_module()
class Res2Net(FreezableBackbone):
    """Res2Net backbone.

    A ResNet skeleton with :class:`Bottle2neck` blocks. State-dict names follow
    the official code and timm (``conv1``, ``bn1``, ``layer1.0.convs.0`` ...), so
    their backbone weights load as they are. The deep stem keeps the official
    v1b names (``conv1.0`` ... ``conv1.6``, then ``bn1``).

    It takes the arguments of the ResNet-family backbones of mmdet
    (``ResNet``, ``ResNetV1d``, ``ResNeXt``, ``Res2Net``), mmseg (``ResNet``,
    ``ResNetV1c``, ``ResNetV1d``, ``ResNeXt``) and mmpretrain (``ResNet``,
    ``ResNetV1d``, ``ResNeXt``, ``SEResNet``, ``Res2Net``) with their meaning, so
    that changing only ``backbone.type`` in their configs gives a Res2Net.
    The defaults are Res2Net's own (e.g. ``out_indices=(3, )``,
    ``norm_eval=False``); the toolboxes' configs pass theirs explicitly.
    Unlike mmdet's ``Res2Net``, which always uses ``style='pytorch'``,
    ``deep_stem=True`` and ``avg_down=True``, the given values are honoured.

    Args:
        arch (str, optional): A named variant from
            :data:`res2net_mm.models.variants.VARIANTS` (for example
            ``'res2net50_v1b_26w_4s'``). It sets the architecture arguments
            below that are left as None.
        depth (int): 26, 50, 101, 152 or 200. Defaults to 50.
        scales (int): Splits per block, >= 2. Defaults to 4.
        base_width (int): Split width at 64 planes. Defaults to 26.
        groups (int): Cardinality of the 3x3 convs (Res2NeXt). Defaults to 1.
            A ResNeXt config's ``groups`` and ``base_width`` (per-group width)
            keep that meaning: each split is ``base_width * groups`` channels
            at 64 planes, grouped by ``groups``, as in the official Res2NeXt.
        width_per_group (int, optional): mmpretrain ResNeXt's name for
            ``base_width``; pass one of the two.
        deep_stem (bool): Three 3x3 convs instead of the 7x7 stem (v1b).
        avg_down (bool): Average-pool then 1x1 conv in the shortcut (v1b).
        se_ratio (int, optional): Squeeze-and-Excitation ratio in every block.
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int, optional): Stem output channels; None gives
            ``base_channels`` (mmdet's default). Defaults to 64.
        base_channels (int): Planes of the first stage. Defaults to 64.
        expansion (int, optional): Block output channels per plane
            (mmpretrain's argument); None gives 4, the Res2Net bottleneck's.
        num_stages (int): Stages, 1 to 4. Defaults to 4.
        strides (Sequence[int]): Stride of the first block of each stage.
        dilations (Sequence[int]): Dilation of each stage. ``strides=(1, 2, 1,
            1), dilations=(1, 1, 2, 4)`` gives output stride 8; ``(1, 2, 2, 1)``
            with ``(1, 1, 1, 2)`` gives 16.
        style (str): ``'pytorch'``: the first block of a stage strides its
            3x3 convs and the pool of its last split; ``'caffe'``: it strides
            its first 1x1 conv, and the 3x3 convs and the pool run at stride 1
            (as mmdet's and mmpretrain's bottlenecks). Defaults to
            ``'pytorch'``.
        contract_dilation (bool): Halve the dilation of the first block of
            every stage whose dilation is above 1 (mmseg). Defaults to False.
        multi_grid (Sequence[int], optional): Dilations of the blocks of the
            last stage, one per block, replacing that stage's dilation (mmseg
            semantics: DeepLabV3's ``(1, 2, 4)``). Defaults to None.
        out_indices (Sequence[int]): Stages whose outputs are returned.
        stage_pool (str): ``'always'`` pools the last split of every stage's
            first block, as the official code (and timm, mmpretrain, MindCV);
            ``'strided'`` only where the stride is not 1, as mmdet 3.3.0 does, so
            that detectors trained in mmdet give identical outputs.
        frozen_stages (int): Freeze the stem (0) and stages up to this index
            (1-based); -1 freezes nothing.
        conv_cfg (dict, optional): Conv layer config.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        norm_eval (bool): Keep norm layers in eval mode during training
            (frozen running statistics). Defaults to False.
        dcn (dict, optional): Deformable conv config for the 3x3 convs.
        stage_with_dcn (Sequence[bool]): Stages that use ``dcn``.
        plugins (list[dict], optional): mmdet-style plugins:
            ``dict(cfg=..., position='after_conv1'|'after_conv2'|
            'after_conv3', stages=(bool, ...))``.
        drop_path_rate (float): Stochastic depth rate, rising linearly from 0
            at the first block to this value at the last.
        with_cp (bool): Activation checkpointing in every block.
        fast_path (bool): Allow the faster implementations of the blocks'
            split convs (one grouped conv and BN in stage blocks, the lean
            chained backward elsewhere; see :class:`Bottle2neck`) and the
            automatic channels_last layout. The grouped conv sums floats in
            another order; False runs the reference computation in the
            input's layout, bit-identical to per-split implementations such
            as mmdet's. Defaults to True.
        channels_last (bool, optional): Compute in the channels_last memory
            format. None (default) does so on CPU, where oneDNN runs this
            network faster in it than in NCHW (docs/speed.md), unless
            ``fast_path=False`` or a plugin or deformable conv that expects
            NCHW is configured, and not while tracing, exporting or
            compiling. True: always; False: never. The outputs come back in
            the input's memory format either way, with the same values up to
            float rounding.
        zero_init_residual (bool): Zero the last norm of every block at init,
            so each residual branch starts as zero. Defaults to True.
        pretrained (str, optional): Deprecated (as in mmdet and mmseg): the
            same as ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``,
            with a warning; it cannot be combined with ``init_cfg``.
        init_cfg (dict or list[dict], optional): Initialization config.
            Defaults to Kaiming for convs and 1/0 for norms.
        **kwargs: Arguments of other backbones are refused with a TypeError
            that names them: those of ResNeSt, TridentNet and DetectoRS
            (:data:`NOT_RES2NET_ARGS`) with the reason, unknown ones with the
            closest valid names.
    """
    stage_blocks = STAGE_BLOCKS

    def __init__(self,
                 arch: Optional[str] = None,
                 depth: Optional[int] = None,
                 scales: Optional[int] = None,
                 base_width: Optional[int] = None,
                 groups: Optional[int] = None,
                 deep_stem: Optional[bool] = None,
                 avg_down: Optional[bool] = None,
                 se_ratio: Optional[int] = None,
                 width_per_group: Optional[int] = None,
                 in_channels: int = 3,
                 stem_channels: Optional[int] = 64,
                 base_channels: int = 64,
                 expansion: Optional[int] = None,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 style: str = 'pytorch',
                 contract_dilation: bool = False,
                 multi_grid: Optional[Sequence[int]] = None,
                 out_indices: Sequence[int] = (3, ),
                 stage_pool: str = 'always',
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 dcn: Optional[dict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[Sequence[dict]] = None,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 fast_path: bool = True,
                 channels_last: Optional[bool] = None,
                 zero_init_residual: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg=DEFAULT_INIT_CFG,
                 **kwargs):
        _refuse_other_backbones_args(kwargs)
        super().__init__(init_cfg=_init_cfg_with_pretrained(pretrained,
                                                            init_cfg))
        base_width = _base_width_alias(base_width, width_per_group)
        if arch is not None and not isinstance(arch, str):
            raise TypeError(f'arch names a Res2Net variant (a str such as '
                            f'\'res2net50_v1b_26w_4s\'); got {arch!r} (a '
                            f'dict arch is a RegNet setting)')
        a = resolve_arch(
            'Res2Net', arch, self.stage_blocks, depth=depth, scales=scales,
            base_width=base_width, groups=groups, deep_stem=deep_stem,
            avg_down=avg_down, se_ratio=se_ratio)
        self.arch = arch
        self.depth = a['depth']
        self.scales = a['scales']
        self.base_width = a['base_width']
        self.groups = a['groups']
        self.deep_stem = a['deep_stem']
        self.avg_down = a['avg_down']
        self.se_ratio = a['se_ratio']
        if stem_channels is None:
            stem_channels = base_channels
        self.expansion = Bottle2neck.expansion if expansion is None \
            else expansion
        self._check_args(num_stages, strides, dilations, out_indices,
                         frozen_stages, stage_pool, stage_with_dcn, plugins,
                         drop_path_rate)
        self._check_toolbox_args(in_channels, stem_channels, base_channels,
                                 style, contract_dilation, multi_grid,
                                 num_stages, norm_cfg)
        self.num_stages = num_stages
        self.strides = tuple(strides)
        self.dilations = tuple(dilations)
        self.style = style
        self.contract_dilation = contract_dilation
        self.multi_grid = None if multi_grid is None else tuple(multi_grid)
        self.out_indices = tuple(sorted(i % num_stages for i in out_indices))
        self.stage_pool = stage_pool
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        # Plugins and deformable convs come from other libraries, which may
        # view() their inputs as NCHW; automatic mode leaves them NCHW.
        self._set_channels_last(channels_last, auto=fast_path and not plugins
                                and (dcn is None
                                     or not any(stage_with_dcn[:num_stages])))
        self.zero_init_residual = zero_init_residual
        self.deploy = False

        self._make_stem(in_channels, stem_channels)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        stage_blocks = self.stage_blocks[self.depth][:num_stages]
        total_blocks = sum(stage_blocks)
        block_index = 0
        in_ch, planes = stem_channels, base_channels
        self.res_layers = []
        self.out_channels = []
        for i, num_blocks in enumerate(stage_blocks):
            stage_plugins = [
                dict(cfg=p['cfg'], position=p['position'],
                     postfix=p.get('postfix', ''))
                for p in plugins or ()
                if p.get('stages') is None or p['stages'][i]
            ]
            blocks = []
            for j, dilation in enumerate(self._block_dilations(i,
                                                               num_blocks)):
                stride = self.strides[i] if j == 0 else 1
                rate = drop_path_rate * block_index / max(total_blocks - 1, 1)
                blocks.append(
                    Bottle2neck(
                        in_ch,
                        planes,
                        stride=stride,
                        dilation=dilation,
                        downsample=self._make_shortcut(
                            in_ch, planes * self.expansion, stride)
                        if j == 0 else None,
                        style=style,
                        expansion=self.expansion,
                        scales=self.scales,
                        base_width=self.base_width,
                        groups=self.groups,
                        base_channels=base_channels,
                        stage_block=j == 0,
                        stage_pool=stage_pool,
                        conv_cfg=conv_cfg,
                        norm_cfg=norm_cfg,
                        dcn=dcn if stage_with_dcn[i] else None,
                        plugins=stage_plugins,
                        se_ratio=self.se_ratio,
                        drop_path_rate=rate,
                        with_cp=with_cp,
                        fast_path=fast_path))
                in_ch = planes * self.expansion
                block_index += 1
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.res_layers.append(name)
            self.out_channels.append(in_ch)
            planes *= 2
        self._freeze_stages()

    def _check_args(self, num_stages, strides, dilations, out_indices,
                    frozen_stages, stage_pool, stage_with_dcn, plugins,
                    drop_path_rate):
        for name in ('deep_stem', 'avg_down'):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f'{name} must be True or False (deep_stem: three 3x3 convs '
                    f'(v1b) or one 7x7 conv (v1); avg_down: pool + 1x1 conv or '
                    f'strided 1x1 conv shortcut), got {getattr(self, name)!r}')
        if self.base_width < 1 or self.groups < 1:
            raise ValueError(f'base_width and groups must be >= 1, got '
                             f'{self.base_width} and {self.groups}')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'num_stages must be 1 to 4, got {num_stages}')
        if len(strides) < num_stages or len(dilations) < num_stages:
            raise ValueError(
                f'strides and dilations need {num_stages} entries '
                f'(num_stages), got {tuple(strides)} and {tuple(dilations)}')
        if len(stage_with_dcn) < num_stages:
            raise ValueError(f'stage_with_dcn needs {num_stages} entries, got '
                             f'{tuple(stage_with_dcn)}')
        self._check_outputs(out_indices, num_stages, frozen_stages,
                            num_stages)
        check_stage_pool(stage_pool)
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        for p in plugins or ():
            if not isinstance(p, dict) or 'cfg' not in p or 'position' not in p:
                raise ValueError(f'each plugin must be dict(cfg=..., position='
                                 f'..., stages=...), got {p!r}')
            if p['position'] not in PLUGIN_POSITIONS:
                raise ValueError(f'plugin position must be one of '
                                 f'{PLUGIN_POSITIONS}, got {p["position"]!r}')
            if p.get('stages') is not None and len(p['stages']) != num_stages:
                raise ValueError(f'plugin stages needs {num_stages} entries '
                                 f'(num_stages), got {tuple(p["stages"])}')

    def _check_toolbox_args(self, in_channels, stem_channels, base_channels,
                            style, contract_dilation, multi_grid, num_stages,
                            norm_cfg):
        """Check the arguments that come from the toolboxes' ResNets."""
        for name, value in (('in_channels', in_channels),
                            ('stem_channels', stem_channels),
                            ('base_channels', base_channels),
                            ('expansion', self.expansion)):
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < 1:
                raise ValueError(
                    f'{name} must be a positive integer, got {value!r}')
        if self.se_ratio is not None and (not isinstance(self.se_ratio, int)
                                          or self.se_ratio < 1):
            raise ValueError(
                f'se_ratio must be None (no Squeeze-and-Excitation) or a '
                f'positive integer channel reduction, got {self.se_ratio!r}')
        if style not in STYLES:
            raise ValueError(f'style must be one of {STYLES} (pytorch: the '
                             f'3x3 convs stride, caffe: the first 1x1 conv '
                             f'strides), got {style!r}')
        if not isinstance(contract_dilation, bool):
            raise TypeError(f'contract_dilation must be True or False, got '
                            f'{contract_dilation!r}')
        if multi_grid is not None:
            blocks = self.stage_blocks[self.depth][num_stages - 1]
            if len(multi_grid) != blocks or not all(
                    isinstance(d, int) and d >= 1 for d in multi_grid):
                raise ValueError(
                    f'multi_grid gives the dilation of each block of the last '
                    f'stage: {blocks} positive integers at depth '
                    f'{self.depth}, got {tuple(multi_grid)}')
        _check_norm_cfg(norm_cfg)

    def _block_dilations(self, stage: int, num_blocks: int) -> Tuple[int]:
        """Dilation of each block of ``stage``, as mmseg's ResLayer sets it:
        ``multi_grid`` replaces the last stage's; ``contract_dilation`` halves
        the first block's (the one that may also stride) elsewhere."""
        if self.multi_grid is not None and stage == self.num_stages - 1:
            return self.multi_grid
        dilation = self.dilations[stage]
        first = dilation // 2 if self.contract_dilation and dilation > 1 \
            else dilation
        return (first, ) + (dilation, ) * (num_blocks - 1)

    def _make_stem(self, in_channels: int, stem_channels: int):
        if self.deep_stem:
            mid = stem_channels // 2
            # Official v1b layout (indices 0..6), so its keys load unchanged.
            self.conv1 = nn.Sequential(
                build_conv_layer(self.conv_cfg, in_channels, mid, 3, stride=2,
                                 padding=1, bias=False),
                build_norm_layer(self.norm_cfg, mid)[1],
                nn.ReLU(inplace=True),
                build_conv_layer(self.conv_cfg, mid, mid, 3, stride=1,
                                 padding=1, bias=False),
                build_norm_layer(self.norm_cfg, mid)[1],
                nn.ReLU(inplace=True),
                build_conv_layer(self.conv_cfg, mid, stem_channels, 3,
                                 stride=1, padding=1, bias=False))
        else:
            self.conv1 = build_conv_layer(
                self.conv_cfg, in_channels, stem_channels, kernel_size=7,
                stride=2, padding=3, bias=False)
        self.norm1_name, norm1 = build_norm_layer(
            self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)

    def _make_shortcut(self, in_ch: int, out_ch: int,
                       stride: int) -> Optional[nn.Module]:
        if stride == 1 and in_ch == out_ch:
            return None
        norm = build_norm_layer(self.norm_cfg, out_ch)[1]
        if not self.avg_down:
            conv = build_conv_layer(
                self.conv_cfg, in_ch, out_ch, 1, stride=stride, bias=False)
            return nn.Sequential(conv, norm)
        # v1b/v1d: pool first so the 1x1 conv sees every pixel instead of
        # skipping 3 of 4. At stride 1 the pool is an identity that keeps index
        # 0, so every stage has the same key names (downsample.1 / .2).
        pool = nn.AvgPool2d(
            stride, stride, ceil_mode=True, count_include_pad=False) \
            if stride != 1 else nn.Identity()
        conv = build_conv_layer(self.conv_cfg, in_ch, out_ch, 1, bias=False)
        return nn.Sequential(pool, conv, norm)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def _frozen_modules(self) -> list:
        stem = [self.conv1, self.norm1] if self.frozen_stages >= 0 else []
        return stem + [getattr(self, f'layer{i}')
                       for i in range(1, self.frozen_stages + 1)]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # mmdet's and mmpretrain's deep stems name their layers ``stem.N``.
        # Their files also load with mmengine's load_checkpoint (load_from=,
        # the toolboxes' own tools), which call nothing of ours but this: the
        # converters' registered hook renames those keys in place here.
        if self.deep_stem:
            get_weight_loader('deep_stem_keys')(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_weights(self):
        if self._init_from_pretrained():
            return
        super().init_weights()
        # Kaiming above also hit the deformable convs' offset convs, which
        # must start at zero (a DCN then starts as a plain conv).
        for m in self.modules():
            if hasattr(m, 'conv_offset'):
                constant_init(m.conv_offset, 0)
        if self.zero_init_residual:
            self._zero_init_residual()

    def switch_to_deploy(self) -> 'Res2Net':
        """Fold every BN into its conv for inference (see
        :meth:`Bottle2neck.switch_to_deploy`): the stem's, then each block's.

        Outputs equal the eval-mode outputs up to float rounding. The state
        dict changes (deploy models are for inference and export). Calling it
        twice does nothing the second time.

        Returns:
            Res2Net: ``self``.
        """
        if self.deploy:
            return self
        if self.deep_stem:
            self.conv1 = fold_sequential(self.conv1)
            last, norm1 = self.conv1[6], self.norm1
        else:
            last, norm1 = self.conv1, self.norm1
        if can_fold(last, norm1):
            # The stem's conv now applies its BN and ReLU.
            folded = fold_bn(last, norm1, relu=True)
            if self.deep_stem:
                self.conv1[6] = folded
            else:
                self.conv1 = folded
            self.add_module(self.norm1_name, nn.Identity())
            self.relu = nn.Identity()
        for m in self.modules():
            if isinstance(m, Bottle2neck):
                m.switch_to_deploy()
        self.deploy = True
        return self

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm1(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, restore = self._enter_layout(x)
        return self._run_stages(self.maxpool(self._stem(x)), self.res_layers,
                                restore)


def _refuse_other_backbones_args(kwargs: dict) -> None:
    """Raise a TypeError naming the arguments Res2Net does not take."""
    if not kwargs:
        return
    known = [name for name in kwargs if name in NOT_RES2NET_ARGS]
    if known:
        raise TypeError('Res2Net does not take ' + '; '.join(
            f'{name}: {name} is {NOT_RES2NET_ARGS[name]}' for name in known))
    valid = [p for p in inspect.signature(Res2Net.__init__).parameters
             if p not in ('self', 'kwargs')]
    hints = []
    for name in kwargs:
        close = difflib.get_close_matches(name, valid, n=2)
        hints.append(f'{name!r}' + (f' (did you mean {" or ".join(close)}?)'
                                    if close else ''))
    raise TypeError(f'Res2Net got unexpected keyword argument(s) '
                    f'{", ".join(hints)}; valid arguments: {", ".join(valid)}')


def _init_cfg_with_pretrained(pretrained: Optional[str], init_cfg):
    """``init_cfg``, or the one that the deprecated ``pretrained`` stands
    for (with mmdet's warning)."""
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'pretrained must be a str or None, got '
                        f'{pretrained!r}')
    if init_cfg and init_cfg is not DEFAULT_INIT_CFG:
        raise ValueError(
            'init_cfg and pretrained cannot be specified at the same time: '
            'give the checkpoint as init_cfg=dict(type=\'Pretrained\', '
            'checkpoint=...)')
    warnings.warn('DeprecationWarning: pretrained is deprecated, '
                  'please use "init_cfg" instead')
    return dict(type='Pretrained', checkpoint=pretrained)


def _base_width_alias(base_width: Optional[int],
                      width_per_group: Optional[int]) -> Optional[int]:
    """``base_width``, or mmpretrain ResNeXt's ``width_per_group``."""
    if width_per_group is None:
        return base_width
    if base_width is not None and base_width != width_per_group:
        raise ValueError(
            f'width_per_group is mmpretrain\'s name for base_width: pass one '
            f'of them, got base_width={base_width} and '
            f'width_per_group={width_per_group}')
    return width_per_group


def _check_norm_cfg(norm_cfg) -> None:
    """Name the norm type that mmcv's ``build_norm_layer`` cannot find (its
    own error prints ``None`` instead of the name)."""
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise TypeError(f'norm_cfg must be a dict with a "type" key, e.g. '
                        f'dict(type=\'BN\'), got {norm_cfg!r}')
    layer_type = norm_cfg['type']
    if not isinstance(layer_type, str):
        return  # a class, which mmcv builds as it is
    with MMENGINE_MODELS.switch_scope_and_registry(None) as registry:
        if registry.get(layer_type) is not None:
            return
        norm_bases = (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                      nn.LayerNorm)
        # mmcv registers its norms in the root; toolboxes add their own.
        valid = sorted({
            name
            for reg in (MMENGINE_MODELS, registry)
            for name, cls in reg.module_dict.items()
            if isinstance(cls, type) and issubclass(cls, norm_bases)
        })
    raise KeyError(f'unknown norm_cfg type {layer_type!r}: valid types are '
                   f'the norm layers registered in MODELS: '
                   f'{", ".join(valid)}')
