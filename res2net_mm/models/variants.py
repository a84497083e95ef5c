"""Named Res2Net variants, declared as data.

Each entry gives the backbone arguments, the parameter count (with a 1000-class
linear head, counted by ``sum(p.numel() for p in model.parameters())``), the
multiply-accumulates of convs and linears at 224x224, the reference top-1 and where
it comes from. The tests build every entry and check params exactly and GMACs within
1%, and compare outputs with the named timm / MindCV models where given.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional

V1B = dict(deep_stem=True, avg_down=True)
OFFICIAL = 'official Res2Net (Gao et al.) ImageNet-1k'
# mmpretrain converted three official models and re-evaluated them (top-5).
OFFICIAL_MMPRETRAIN = OFFICIAL + '; top-5 from mmpretrain\'s evaluation'
SEED = 'MindCV, 8 x Ascend 910 (the seed table)'
PAPER = ('Res2Net paper (Gao et al., TPAMI 2021) Table 1, authors\' training; '
         'no public weights')


@dataclass(frozen=True)
class Variant:
    """One named architecture.

    Args:
        name (str): Name used by ``Res2Net(arch=name)`` and ``build_classifier``.
        backbone (dict): Architecture arguments of :class:`Res2Net`.
        params (int): Parameters with a 1000-class fc.
        gmacs (float): Conv + linear GMACs at 224x224 with the fc.
        top1 (float, optional): Reference ImageNet-1k top-1 (%).
        top5 (float, optional): Reference top-5 (%).
        source (str): Where the accuracy comes from.
        timm (str, optional): The same architecture in timm.
        mindcv (str, optional): The same architecture in MindCV.
        mindcv_params (int, optional): Parameter count as MindCV reports it:
            1000 classes, BN moving statistics included (they are Parameters
            in MindSpore). MindCV's builder functions default to 1001 classes,
            its ``create_model`` to 1000.
        model (str): Backbone family: ``'Res2Net'`` (:class:`Res2Net`),
            ``'Res2NetDLA'`` (:class:`~res2net_mm.models.dla.Res2NetDLA`) or
            ``'bLRes2Net'`` (:class:`~res2net_mm.models.blres2net.BLRes2Net`).
            Only ``'Res2Net'`` entries are valid ``Res2Net(arch=...)``.
    """
    name: str
    backbone: Dict = field(default_factory=dict)
    params: int = 0
    gmacs: float = 0.
    top1: Optional[float] = None
    top5: Optional[float] = None
    source: str = ''
    timm: Optional[str] = None
    mindcv: Optional[str] = None
    mindcv_params: Optional[int] = None
    model: str = 'Res2Net'


_VARIANTS = (
    Variant('res2net50_26w_4s', dict(depth=50, base_width=26, scales=4),
            25_699_120, 4.255, 77.99, None, OFFICIAL, timm='res2net50_26w_4s'),
    Variant('res2net50_48w_2s', dict(depth=50, base_width=48, scales=2),
            25_287_304, 4.160, 77.32, None, OFFICIAL, timm='res2net50_48w_2s'),
    Variant('res2net50_14w_8s', dict(depth=50, base_width=14, scales=8),
            25_059_816, 4.179, 78.14, 93.85, OFFICIAL_MMPRETRAIN,
            timm='res2net50_14w_8s'),
    Variant('res2net50_26w_6s', dict(depth=50, base_width=26, scales=6),
            37_051_448, 6.296, 78.58, None, OFFICIAL, timm='res2net50_26w_6s'),
    Variant('res2net50_26w_8s', dict(depth=50, base_width=26, scales=8),
            48_403_776, 8.336, 79.20, 94.36, OFFICIAL_MMPRETRAIN,
            timm='res2net50_26w_8s'),
    Variant('res2net101_26w_4s', dict(depth=101, base_width=26, scales=4),
            45_206_688, 8.067, 79.19, 94.44, OFFICIAL_MMPRETRAIN,
            timm='res2net101_26w_4s'),
    Variant('res2net50_v1b_26w_4s',
            dict(depth=50, base_width=26, scales=4, **V1B), 25_718_352, 4.495,
            80.27, None, OFFICIAL, timm='res2net50d'),
    Variant('res2net101_v1b_26w_4s',
            dict(depth=101, base_width=26, scales=4, **V1B), 45_225_920, 8.307,
            81.23, None, OFFICIAL, timm='res2net101d'),
    Variant('res2net152_v1b_26w_4s',
            dict(depth=152, base_width=26, scales=4, **V1B), 61_294_480,
            12.118, None, None, 'no published accuracy'),
    Variant('res2next50', dict(depth=50, base_width=4, scales=4, groups=8),
            24_671_464, 4.173, 78.24, None, OFFICIAL, timm='res2next50'),
    # The seed's four models: the same architectures as their official
    # counterparts, trained by MindCV with its own recipes.
    Variant('res2net50', dict(depth=50, base_width=26, scales=4), 25_699_120,
            4.255, 79.35, 94.64, SEED, timm='res2net50_26w_4s',
            mindcv='res2net50', mindcv_params=25_758_612),
    Variant('res2net101', dict(depth=101, base_width=26, scales=4),
            45_206_688, 8.067, 79.56, 94.70, SEED, timm='res2net101_26w_4s',
            mindcv='res2net101', mindcv_params=45_325_748),
    Variant('res2net50_v1b', dict(depth=50, base_width=26, scales=4, **V1B),
            25_718_352, 4.495, 80.32, 95.09, SEED, timm='res2net50d',
            mindcv='res2net50_v1b', mindcv_params=25_777_972),
    Variant('res2net101_v1b', dict(depth=101, base_width=26, scales=4, **V1B),
            45_225_920, 8.307, 81.14, 95.41, SEED, timm='res2net101d',
            mindcv='res2net101_v1b', mindcv_params=45_345_108),
    # The other models of the paper's Table 1 (top-1 = 100 - its error).
    # SE-Res2Net-50: SE (ratio 16, biased 1x1 convs) after the last norm of
    # every block; 2,530,992 parameters more than Res2Net-50, exactly what
    # SE adds to ResNet-50 in SENet-50 (timm seresnet50). No public weights.
    Variant('se_res2net50', dict(depth=50, base_width=26, scales=4,
                                 se_ratio=16),
            28_230_112, 4.258, 78.44, 94.06, PAPER),
    # Res2Net-DLA-60 / Res2NeXt-DLA-60 (= timm dla60_res2net /
    # dla60_res2next, see models/dla.py TIMM_NAMES; not in the ``timm``
    # field, which names Res2Net-layout models). The official checkpoints
    # carry 297,472 more parameters (21,145,544 / 17,330,456) and 0.077
    # GMACs (4.200 / 3.536) in project convs whose output is never used.
    # No ``depth`` key: 60 is the class default, and keeping the key out
    # stops the Res2Net weight detector from listing these names.
    Variant('res2net_dla60', dict(scales=4, base_width=28), 20_848_072,
            4.123, 78.47, 94.20, OFFICIAL, timm='dla60_res2net',
            model='Res2NetDLA'),
    Variant('res2next_dla60', dict(scales=4, base_width=4, groups=8),
            17_032_984, 3.459, 78.45, 94.14, OFFICIAL, timm='dla60_res2next',
            model='Res2NetDLA'),
    # bLRes2Net-50: bLResNet-50 (alpha 2, beta 4) with 26w x 4s Res2Net
    # blocks (models/blres2net.py); no public code or weights. Its skeleton
    # with plain bottlenecks gives bLResNet-50's published 2.85 GFLOPs.
    Variant('blres2net50', dict(scales=4, base_width=26), 26_845_561, 2.994,
            78.32, 94.00, PAPER, model='bLRes2Net'),
)

VARIANTS: Dict[str, Variant] = {v.name: v for v in _VARIANTS}


def get_variant(name: str) -> Variant:
    """Look a variant up by name, with a helpful error for unknown names."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f'unknown Res2Net variant {name!r}; valid names: '
                       f'{", ".join(VARIANTS)}') from None


# The architecture arguments each backbone family takes when neither a named
# variant nor the caller sets them.
FAMILY_DEFAULTS = {
    'Res2Net': dict(depth=50, scales=4, base_width=26, groups=1,
                    deep_stem=False, avg_down=False, se_ratio=None),
    'Res2NetDLA': dict(depth=60, scales=4, base_width=28, groups=1),
    'bLRes2Net': dict(depth=50, scales=4, base_width=26, groups=1),
}


def check_scales(scales: int) -> int:
    """``scales`` (splits per block), or a ValueError."""
    if not isinstance(scales, int) or isinstance(scales, bool) or scales < 2:
        raise ValueError(f'scales must be an integer >= 2 (scales=1 is a '
                         f'plain ResNet), got {scales!r}')
    return scales


def resolve_arch(family: str, arch: Optional[str] = None,
                 depths: Optional[Iterable[int]] = None, **explicit) -> Dict:
    """Architecture arguments of a backbone of ``family``.

    The family's :data:`FAMILY_DEFAULTS`, then the named variant's arguments
    (which must belong to the family), then the arguments the caller passed
    (None means "not passed"). The depth must be one of ``depths`` (when
    given) and the scales valid.
    """
    settings = dict(FAMILY_DEFAULTS[family])
    if arch is not None:
        settings.update(family_backbone(arch, family))
    settings.update({k: v for k, v in explicit.items() if v is not None})
    if depths is not None and settings['depth'] not in depths:
        raise KeyError(f'invalid depth {settings["depth"]} for {family}: '
                       f'valid depths are {sorted(depths)}')
    check_scales(settings['scales'])
    return settings


def list_variants() -> list:
    """Names of all declared variants."""
    return list(VARIANTS)


def _pct(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}'


def variants_markdown() -> str:
    """The variant table of docs/variants.md (kept in sync by a test)."""
    rows = [
        '| name | params (1000 cls) | GMACs @224 | top-1 | top-5 | source '
        '| same as |',
        '|---|---:|---:|---:|---:|---|---|',
    ]
    for v in VARIANTS.values():
        twins = ', '.join(f'{lib} `{name}`'
                          for lib, name in (('timm', v.timm),
                                            ('MindCV', v.mindcv)) if name)
        rows.append(
            f'| `{v.name}` | {v.params:,} | {v.gmacs:.3f} | '
            f'{_pct(v.top1)} | {_pct(v.top5)} | {v.source} | '
            f'{twins or "-"} |')
    return '\n'.join(rows)


def family_backbone(arch: str, model: str) -> Dict:
    """Backbone arguments of the named variant ``arch`` of family ``model``.

    Raises:
        ValueError: When ``arch`` names a variant of another family.
    """
    variant = get_variant(arch)
    if variant.model != model:
        names = [n for n, v in VARIANTS.items() if v.model == model]
        raise ValueError(f'{arch!r} is a {variant.model} variant, not a '
                         f'{model}; valid names: {", ".join(names)}')
    return dict(variant.backbone)
