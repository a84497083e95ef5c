"""Tell the naming format and architecture of Res2Net weights from their keys.

Pure functions over flat ``{name: tensor}`` dicts; nothing is loaded here.
"""
import re
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..models.res2net import STAGE_BLOCKS
from ..models import variants
from ..models.variants import VARIANTS, get_variant
from .keymaps import FROM_FORMAT, strip_prefix

FORMATS = ('native', 'timm', 'official', 'mmpretrain', 'mmdet', 'mindcv')
# Top-level parts of mmdet detectors besides the backbone.
_NOT_BACKBONE = ('neck.', 'rpn_head.', 'roi_head.', 'bbox_head.', 'mask_head.',
                 'semantic_head.', 'panoptic_head.', 'panoptic_fusion_head.',
                 'query_head.', 'encoder.', 'decoder.', 'head.',
                 'data_preprocessor.')
BACKBONE_KEY = re.compile(r'^(conv1|bn1|layer\d+)\.')
CLASSIFIER_KEY = re.compile(r'^fc\.')


class FormatDetectionError(ValueError):
    """The keys match no known Res2Net naming."""


def _sample(keys, n: int = 5) -> str:
    keys = list(keys)
    more = f' ... ({len(keys)} keys)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def detect_format(state: Mapping) -> str:
    """Tell the naming format of a flat state dict from its keys.

    Args:
        state (Mapping): Parameter names to tensors, as read from the file.

    Returns:
        str: ``'mindcv'`` (MindSpore names), ``'mmpretrain'`` (``stem.N.conv``
        deep stem, or ``backbone.``/``head.`` prefixes), ``'mmdet'`` (flat
        ``stem.N`` deep stem, or a detector with necks/heads), ``'native'``
        (a res2net_mm classifier: ``backbone.`` + ``fc.``) or ``'timm'`` (the
        official / timm names, which are also res2net_mm's backbone names).

    Raises:
        FormatDetectionError: When no Res2Net naming matches.
    """
    keys = list(state)
    if any(k.endswith(('.moving_mean', '.moving_variance', '.gamma'))
           or '.down_sample.' in k for k in keys):
        return 'mindcv'
    prefixed = any(k.startswith('backbone.') for k in keys)
    inner = list(strip_prefix(state, 'backbone.')) if prefixed else keys
    if any(re.match(r'^stem\.\d+\.(conv|bn)\.', k) for k in inner):
        return 'mmpretrain'
    if any(re.match(r'^stem\.\d+\.(weight|bias|running_)', k) for k in inner):
        return 'mmdet'
    if not any(k.startswith(('conv1.', 'layer1.')) for k in inner):
        raise FormatDetectionError(
            f'no Res2Net weights found (no conv1/stem/layer1 keys); keys: '
            f'{_sample(keys)}')
    if prefixed:
        tops = {k.split('.', 1)[0] for k in keys} - {'backbone'}
        if tops - {'head', 'fc', 'data_preprocessor'}:
            return 'mmdet'  # a detector: necks, rpn/roi heads ...
        if 'fc' in tops:
            return 'native'  # res2net_mm's Res2NetClassifier
        return 'mmpretrain'
    return 'timm'


def split_parts(state: Mapping, fmt: str) -> Tuple[Dict, Dict, Dict[str, str]]:
    """Split backbone, classifier and other weights (still ``fmt`` names).

    Args:
        state (Mapping): The flat state dict of the file.
        fmt (str): Its format (see :func:`detect_format`).

    Returns:
        tuple: ``(backbone, classifier, dropped)``; the backbone without any
        ``backbone.`` prefix, the classifier as native ``fc.*`` keys, and
        ``dropped`` mapping each left-out key to the reason.
    """
    backbone, classifier, dropped = {}, {}, {}
    prefixed = any(k.startswith('backbone.') for k in state)
    for k, v in state.items():
        if prefixed:
            if k.startswith('backbone.'):
                backbone[k[len('backbone.'):]] = v
            elif k.startswith('head.fc.'):
                classifier[k[len('head.'):]] = v
            elif k.startswith('fc.') and fmt == 'native':
                classifier[k] = v
            elif k.startswith('head.'):
                dropped[k] = 'classification head (not a linear fc)'
            else:
                dropped[k] = 'detector/classifier part outside the backbone'
        elif fmt == 'mindcv' and k.startswith('classifier.'):
            classifier['fc.' + k[len('classifier.'):]] = v
        elif k.startswith('fc.'):
            classifier[k] = v
        else:
            backbone[k] = v
    return backbone, classifier, dropped


def to_native(state: Mapping, fmt: str = 'auto') -> Tuple[Dict, Dict]:
    """Rename a file's state dict to the native (res2net_mm) names.

    Args:
        state (Mapping): The flat state dict of the file.
        fmt (str): One of :data:`FORMATS`, or ``'auto'`` to detect it.

    Returns:
        tuple[dict, dict]: The native state (backbone keys plus ``fc.*`` when
        the file has a linear classifier) and a report with ``format``,
        ``detected`` (bool), ``dropped`` (``{key: reason}``) and ``added``
        (keys filled in, e.g. BN ``num_batches_tracked`` MindSpore lacks).
    """
    detected = fmt == 'auto'
    if detected:
        fmt = detect_format(state)
    if fmt not in FORMATS:
        raise ValueError(f'unknown format {fmt!r}; valid: {FORMATS} or auto')
    backbone, classifier, dropped = split_parts(state, fmt)
    rename = FROM_FORMAT['timm' if fmt in ('official', 'native') else fmt]
    try:
        native = rename(backbone)
    except KeyError as e:
        raise FormatDetectionError(
            f'the keys do not fit the {fmt!r} naming: {e}') from None
    out = {}
    for k, v in native.items():
        if BACKBONE_KEY.match(k):
            out[k] = v
        else:
            dropped[k] = 'not a Res2Net backbone weight' + (
                ' (MindSpore training state)' if fmt == 'mindcv' else '')
    if not any(k.startswith('layer1.0.convs.') for k in out):
        raise FormatDetectionError(
            'no Res2Net blocks (layer1.0.convs.*) after renaming as '
            f'{fmt!r}: is this a Res2Net checkpoint (not a ResNet)? keys: '
            f'{_sample(state)}')
    added = []
    for k in list(out):
        if k.endswith('.running_mean'):
            nbt = k[:-len('running_mean')] + 'num_batches_tracked'
            if nbt not in out:
                out[nbt] = torch.tensor(0, dtype=torch.long)
                added.append(nbt)
    out.update(classifier)
    return out, dict(format=fmt, detected=detected, dropped=dropped,
                     added=added)


def _blocks(state: Mapping, stage: int) -> int:
    idx = {int(m.group(1)) for k in state
           for m in [re.match(rf'^layer{stage}\.(\d+)\.', k)] if m}
    return max(idx) + 1 if idx else 0


def detect_variant(native: Mapping) -> Dict:
    """Infer the architecture from native keys and shapes.

    Args:
        native (Mapping): Native state dict (see :func:`to_native`).

    Returns:
        dict: ``depth``, ``scales``, ``base_width``, ``groups``, ``deep_stem``,
        ``avg_down``, ``se_ratio`` (the :class:`Res2Net` architecture
        arguments), ``stem_channels``, ``base_channels``, ``in_channels``,
        ``num_stages``, ``num_classes`` (None without a classifier) and
        ``variants`` (named variants with these arguments). Strides,
        dilations and ``stage_pool`` leave no trace in the weights.

    Raises:
        FormatDetectionError: When the weights are not a Res2Net or the
            architecture cannot be told (then pass it explicitly).
    """

    def shape(key):
        if key not in native:
            raise FormatDetectionError(f'key {key!r} is missing; cannot tell '
                                       f'the architecture')
        return tuple(native[key].shape)

    deep_stem = 'conv1.0.weight' in native
    in_channels = shape('conv1.0.weight' if deep_stem else 'conv1.weight')[1]
    stem_channels = shape('bn1.weight')[0]
    counts = []
    for stage in range(1, 5):
        n = _blocks(native, stage)
        if not n:
            break
        counts.append(n)
    if not counts:
        raise FormatDetectionError(
            'no layer1 blocks: not a Res2Net state dict')
    depths = [d for d, blocks in STAGE_BLOCKS.items()
              if tuple(blocks[:len(counts)]) == tuple(counts)]
    if len(depths) != 1:
        raise FormatDetectionError(
            f'blocks per stage {tuple(counts)} match depths {depths}; pass '
            f'the architecture explicitly (arch=/--arch)')
    scales = 1 + len({k.split('.')[3] for k in native
                      if re.match(r'^layer1\.0\.convs\.\d+\.weight$', k)})
    avg_down = 'layer1.0.downsample.2.weight' in native or \
        'layer2.0.downsample.2.weight' in native
    widths, planes_list = [], []
    for stage in range(1, len(counts) + 1):
        conv = shape(f'layer{stage}.0.convs.0.weight')
        planes = shape(f'layer{stage}.0.conv3.weight')[0] // 4
        widths.append(conv)
        planes_list.append(planes)
    groups = widths[0][0] // widths[0][1]
    base_channels = planes_list[0]
    # width per group = floor(planes * base_width / base_channels) in every
    # stage (base_channels: the planes of the first stage).
    candidates = [
        bw for bw in range(1, 4097)
        if all((p * bw) // base_channels == w[0] // groups
               for p, w in zip(planes_list, widths))
    ]
    if len(candidates) != 1:
        raise FormatDetectionError(
            f'split widths {[w[0] for w in widths]} fit base_width '
            f'{candidates[:5]}; pass the architecture explicitly')
    se_ratio = None
    if 'layer1.0.se.fc1.weight' in native:
        hidden = shape('layer1.0.se.fc1.weight')[0]
        se_ratio = (planes_list[0] * 4) // hidden
    num_classes = shape('fc.weight')[0] if 'fc.weight' in native else None
    arch = dict(depth=depths[0], scales=scales, base_width=candidates[0],
                groups=groups, deep_stem=deep_stem, avg_down=avg_down,
                se_ratio=se_ratio)
    names = [
        name for name, v in VARIANTS.items()
        if {**dict(groups=1, deep_stem=False, avg_down=False, se_ratio=None),
            **v.backbone} == arch
    ] if (stem_channels, base_channels, in_channels,
          len(counts)) == (64, 64, 3, 4) else []
    return dict(arch, stem_channels=stem_channels, base_channels=base_channels,
                in_channels=in_channels, num_stages=len(counts),
                num_classes=num_classes, variants=names)


def backbone_kwargs(variant: Dict) -> Dict:
    """The :class:`Res2Net` arguments of a :func:`detect_variant` result."""
    keys = ('depth', 'scales', 'base_width', 'groups', 'deep_stem', 'avg_down',
            'se_ratio', 'stem_channels', 'base_channels', 'in_channels',
            'num_stages')
    return {k: variant[k] for k in keys}


def describe_variant(variant: Dict) -> str:
    """One line for users, e.g. ``depth 50, 26w x 4s, deep stem ...``."""
    text = (f"depth {variant['depth']}, {variant['base_width']}w x "
            f"{variant['scales']}s")
    if variant['groups'] > 1:
        text += f", {variant['groups']} groups (Res2NeXt)"
    text += ', deep stem (v1b)' if variant['deep_stem'] else ', 7x7 stem (v1)'
    text += ', avg-down shortcut' if variant['avg_down'] else \
        ', strided-conv shortcut'
    if variant.get('se_ratio'):
        text += f", SE ratio {variant['se_ratio']}"
    if (variant['stem_channels'], variant['base_channels']) != (64, 64):
        text += (f", stem {variant['stem_channels']} / base "
                 f"{variant['base_channels']} channels")
    if variant['num_stages'] != 4:
        text += f", {variant['num_stages']} stages"
    if variant['num_classes'] is not None:
        text += f", classifier with {variant['num_classes']} classes"
        if variant['num_classes'] == 1001:
            text += ' (MindCV default: 1000 ImageNet classes + 1)'
    else:
        text += ', no classifier'
    if variant['variants']:
        text += f" = {' / '.join(variant['variants'])}"
    return text


def variant_differences(variant: Dict, expected: Dict) -> List[str]:
    """Architecture arguments where ``variant`` and ``expected`` disagree."""
    diffs = []
    for k, v in expected.items():
        if k in variant and variant[k] != v:
            diffs.append(f'{k}: file {variant[k]!r}, expected {v!r}')
    return diffs


def resolve_arch(arch: Optional[str]) -> Optional[Dict]:
    """Backbone arguments of a named variant, with its family's defaults."""
    if arch is None:
        return None
    return variants.resolve_arch(get_variant(arch).model, arch)
