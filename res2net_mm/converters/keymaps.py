"""Pure state-dict key remapping between Res2Net weight formats.

The native (res2net_mm) format is the official / timm naming of the backbone
(``conv1``, ``bn1``, ``layer1.0.convs.0`` ...; v1b stem ``conv1.0`` ... ``conv1.6``),
with the classifier, where present, as ``fc.weight`` / ``fc.bias``.
Every function here renames by name, never by position, takes a flat mapping of
names to tensors (or arrays) and returns a new one; nothing is loaded or saved.
"""
import re
from typing import Callable, Dict, List, Mapping, Tuple

Rules = List[Tuple[str, str]]

# mmpretrain's deep stem is three ConvModules; mmdet's a flat Sequential whose
# last BN is the official ``bn1``.
_MMPRETRAIN_STEM: Rules = [
    (r'^stem\.0\.conv\.', 'conv1.0.'),
    (r'^stem\.0\.bn\.', 'conv1.1.'),
    (r'^stem\.1\.conv\.', 'conv1.3.'),
    (r'^stem\.1\.bn\.', 'conv1.4.'),
    (r'^stem\.2\.conv\.', 'conv1.6.'),
    (r'^stem\.2\.bn\.', 'bn1.'),
]
_MMDET_STEM: Rules = [
    (r'^stem\.0\.', 'conv1.0.'),
    (r'^stem\.1\.', 'conv1.1.'),
    (r'^stem\.3\.', 'conv1.3.'),
    (r'^stem\.4\.', 'conv1.4.'),
    (r'^stem\.6\.', 'conv1.6.'),
    (r'^stem\.7\.', 'bn1.'),
]
# Applied one after the other (a shortcut BN needs both its module and its
# leaf renamed), unlike the first-match rules above.
_MINDCV_MODULES: Rules = [(r'\.down_sample\.', '.downsample.')]
_MINDCV_NAMES: Rules = [
    (r'\.gamma$', '.weight'),
    (r'\.beta$', '.bias'),
    (r'\.moving_mean$', '.running_mean'),
    (r'\.moving_variance$', '.running_var'),
    (r'^classifier\.', 'fc.'),
]


def rename(state: Mapping, rules: Rules) -> Dict:
    """Apply the first matching ``(pattern, replacement)`` rule to each key."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        if new in out:
            raise KeyError(f'two keys map to {new!r} (second: {key!r})')
        out[new] = value
    return out


def _invert(rules: Rules) -> Rules:
    """Reverse simple prefix/infix rules (patterns without groups)."""
    inverted = []
    for pattern, repl in rules:
        anchored_start = pattern.startswith('^')
        anchored_end = pattern.endswith('$')
        plain = pattern.strip('^$').replace('\\.', '.')
        new_pattern = ('^' if anchored_start else '') + re.escape(repl) + (
            '$' if anchored_end else '')
        inverted.append((new_pattern, plain))
    return inverted


def strip_prefix(state: Mapping, prefix: str) -> Dict:
    """Keep the keys that start with ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def add_prefix(state: Mapping, prefix: str) -> Dict:
    return {prefix + k: v for k, v in state.items()}


def split_classifier(state: Mapping) -> Tuple[Dict, Dict]:
    """Split native keys into (backbone, classifier ``fc.*``)."""
    backbone = {k: v for k, v in state.items() if not k.startswith('fc.')}
    head = {k: v for k, v in state.items() if k.startswith('fc.')}
    return backbone, head


# ---- official / timm: the native naming itself ----------------------------
def from_timm(state: Mapping) -> Dict:
    """timm and the official .pth files use the native names."""
    return dict(state)


def to_timm(state: Mapping) -> Dict:
    return dict(state)


# ---- mmpretrain -------------------------------------------------------------
def from_mmpretrain(state: Mapping) -> Dict:
    """mmpretrain backbone-only or ``ImageClassifier`` state dict -> native."""
    if any(k.startswith('backbone.') for k in state):
        native = rename(strip_prefix(state, 'backbone.'), _MMPRETRAIN_STEM)
        native.update(
            {k[len('head.'):]: v for k, v in state.items()
             if k.startswith('head.fc.')})
        return native
    return rename(state, _MMPRETRAIN_STEM)


def has_deep_stem(state: Mapping) -> bool:
    """Native keys with the three-conv (v1b) stem."""
    return 'conv1.0.weight' in state


def to_mmpretrain(state: Mapping, with_prefix: bool = True) -> Dict:
    """Native -> mmpretrain (``backbone.``/``head.fc.`` when ``with_prefix``)."""
    backbone, head = split_classifier(state)
    if has_deep_stem(backbone):  # the 7x7 stem has the same names in both
        backbone = rename(backbone, _invert(_MMPRETRAIN_STEM))
    if not with_prefix:
        return backbone
    out = add_prefix(backbone, 'backbone.')
    out.update(add_prefix(head, 'head.'))
    return out


# ---- mmdet -------------------------------------------------------------------
def from_mmdet(state: Mapping) -> Dict:
    """mmdet Res2Net (pretrain naming, or whole detector) -> native backbone.

    Detector checkpoints keep only their ``backbone.`` part here; necks and heads
    are not Res2Net weights.
    """
    if any(k.startswith('backbone.') for k in state):
        state = strip_prefix(state, 'backbone.')
    return rename(state, _MMDET_STEM)


def to_mmdet(state: Mapping, with_prefix: bool = False) -> Dict:
    """Native -> mmdet backbone naming (the classifier is dropped)."""
    backbone, _ = split_classifier(state)
    if not has_deep_stem(backbone):
        raise ValueError(
            'mmdet\'s Res2Net always has the deep (v1b/v1d) stem and avg-down '
            'shortcuts; a 7x7-stem (v1) model has no mmdet equivalent')
    out = rename(backbone, _invert(_MMDET_STEM))
    return add_prefix(out, 'backbone.') if with_prefix else out


def native_stem_names(keys) -> Dict[str, str]:
    """Old -> native names for mmdet / mmpretrain deep-stem keys in ``keys``.

    Other keys are left out. mmpretrain's stem keys carry ``.conv.``/``.bn.``,
    mmdet's a bare index.
    """
    stem = [k for k in keys if k.startswith('stem.')]
    rules = _MMPRETRAIN_STEM if any(
        re.match(r'^stem\.\d+\.(conv|bn)\.', k) for k in stem) else _MMDET_STEM
    return {k: v for k, v in zip(stem, rename(dict.fromkeys(stem), rules))}


# ---- MindCV ----------------------------------------------------------------
def from_mindcv(state: Mapping) -> Dict:
    """MindCV (MindSpore) parameter names -> native.

    MindCV's v1b keeps no pool in the layer1 shortcut, so its conv/BN sit at
    ``down_sample.0/1`` there while every other stage uses ``.1/.2`` as the
    official code does. BN ``num_batches_tracked`` does not exist in MindSpore
    and is left out (it only matters for momentum=None).
    """
    out = rename(rename(state, _MINDCV_MODULES), _MINDCV_NAMES)
    if has_deep_stem(out):
        fixed = {}
        for k, v in out.items():
            m = re.match(r'^(layer1\.0\.downsample\.)([01])\.(.*)$', k)
            if m:
                k = f'{m.group(1)}{int(m.group(2)) + 1}.{m.group(3)}'
            fixed[k] = v
        out = fixed
    return out


def to_mindcv(state: Mapping) -> Dict:
    """Native -> MindCV parameter names (inverse of :func:`from_mindcv`)."""
    state = {k: v for k, v in state.items()
             if not k.endswith('num_batches_tracked')}
    # BN affine parameters become gamma/beta; conv weights keep their name.
    norms = {k[:-len('.running_mean')] for k in state
             if k.endswith('.running_mean')}
    renamed = {}
    for k, v in state.items():
        module, _, leaf = k.rpartition('.')
        if module in norms and leaf in ('weight', 'bias'):
            k = f'{module}.{"gamma" if leaf == "weight" else "beta"}'
        renamed[k] = v
    state = renamed
    if has_deep_stem(state):
        fixed = {}
        for k, v in state.items():
            m = re.match(r'^(layer1\.0\.downsample\.)([12])\.(.*)$', k)
            if m:
                k = f'{m.group(1)}{int(m.group(2)) - 1}.{m.group(3)}'
            fixed[k] = v
        state = fixed
    state = rename(state, [(r'\.downsample\.', '.down_sample.')])
    return rename(state, [
        (r'\.running_mean$', '.moving_mean'),
        (r'\.running_var$', '.moving_variance'),
        (r'^fc\.', 'classifier.'),
    ])


# ---- Res2Net-DLA ------------------------------------------------------------
# The DLA backbones use timm's names (see res2net_mm.models.dla), which the
# official files share except for the unused project layers below.
_DLA_PROJECT = re.compile(r'^(.*\.)?project\.')


def dla_from_official(state: Mapping) -> Tuple[Dict, Dict[str, str]]:
    """Official / timm Res2Net-DLA weights -> res2net_mm names.

    Drops the ``project`` layers of trees whose first child is a tree (their
    output is never used; the official files carry them, timm's do not) and
    reshapes the 1x1-conv classifier ``fc.weight`` ``(N, C, 1, 1)`` to the
    linear ``(N, C)`` of :class:`~res2net_mm.models.Res2NetClassifier`.
    Decided by names only: a tree's project is used iff the tree has a block
    ``tree1.conv1``.

    Args:
        state (Mapping): Official or timm DLA weights.

    Returns:
        tuple[dict, dict]: The weights and ``{dropped key: reason}``.
    """
    out, dropped = {}, {}
    for key, value in state.items():
        m = _DLA_PROJECT.match(key)
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


FROM_FORMAT: Dict[str, Callable[[Mapping], Dict]] = dict(
    native=dict, official=from_timm, timm=from_timm,
    mmpretrain=from_mmpretrain, mmdet=from_mmdet, mindcv=from_mindcv)
TO_FORMAT: Dict[str, Callable[[Mapping], Dict]] = dict(
    native=dict, timm=to_timm, mmpretrain=to_mmpretrain, mmdet=to_mmdet,
    mindcv=to_mindcv)
