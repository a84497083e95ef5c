"""Load Res2Net weights of any supported format into res2net_mm models.

``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` of a Res2Net or a
Res2Net-DLA backbone comes here (:func:`load_pretrained_from_init_cfg`, which
the backbones find in :data:`res2net_mm.registry.WEIGHT_LOADERS` under
``'Pretrained'``): unlike mmengine's own ``Pretrained`` init, which warns about
missing keys and then trains from random weights, weights that do not fit the
backbone raise unless the user relaxes it. :func:`rename_deep_stem_keys`
(``'deep_stem_keys'``) lets mmdet's and mmpretrain's files load into a
deep-stem Res2Net with ``load_state_dict`` itself (mmengine's
``load_checkpoint``, ``load_from=``).
"""
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..registry import WEIGHT_LOADERS
from .detect import (FORMATS, backbone_kwargs, describe_variant,
                     detect_variant, resolve_arch, to_native,
                     variant_differences, FormatDetectionError)
from .errors import CheckpointError, WeightMismatchError
from .keymaps import dla_from_official, native_stem_names, strip_prefix
from .reading import read_checkpoint, resolve_path
from .validate import check_finite, validate_native

CLASSIFIER = re.compile(r'^(fc|head|classifier)\.')


def _read_state(path, trust: bool, map_location,
                prefix: Optional[str]) -> Tuple[str, Dict, Dict]:
    """``(local path, flat state, info)`` of a file, URL or name, only the
    keys under ``prefix`` (without it) when one is given."""
    path = resolve_path(path)
    state, info = read_checkpoint(path, trust=trust, map_location=map_location)
    if prefix:
        state = strip_prefix(state, prefix)
        if not state:
            raise CheckpointError(path, f'no keys start with prefix '
                                  f'{prefix!r}')
    return path, state, info


def load_checkpoint_any(path,
                        fmt: str = 'auto',
                        trust: bool = False,
                        map_location='cpu',
                        prefix: Optional[str] = None,
                        arch: Optional[str] = None,
                        allow_nonfinite: bool = False,
                        check_architecture: bool = True) -> Tuple[Dict, Dict]:
    """Read any supported checkpoint file as a native state dict, validated.

    Before the weights are returned (and so before anything is written or
    loaded), every tensor's shape is checked against the architecture
    (detected from the weights, or ``arch``) and every value must be finite
    (see :mod:`.validate`).

    Args:
        path (str): The file: PyTorch (official / timm / mmpretrain / mmdet /
            res2net_mm), safetensors or MindSpore ``.ckpt``; also a URL or
            ``open-mmlab://NAME`` (downloaded once, see :func:`resolve_path`).
        fmt (str): Naming format, ``'auto'`` to detect it, or one of
            ``native``, ``timm``, ``official``, ``mmpretrain``, ``mmdet``,
            ``mindcv`` to override the detection. ``'safetensors'`` is a
            container, not a naming, and is treated as ``'auto'``.
        trust (bool): Allow a full unpickle of PyTorch files that hold more
            than tensors (training checkpoints). Defaults to False.
        map_location: Passed to ``torch.load``. Defaults to ``'cpu'``.
        prefix (str, optional): Keep only the keys under this prefix (as
            mmengine's ``Pretrained`` init), e.g. ``'backbone.'``.
        arch (str, optional): Named variant the weights must be; a file of
            another architecture raises. Defaults to None (detect it).
        allow_nonfinite (bool): Accept NaN / infinite values (listed in the
            info's ``nonfinite``). Defaults to False.
        check_architecture (bool): Check every shape against the detected
            architecture. ``False`` when the caller checks against a model of
            its own (``init_cfg`` loading). Defaults to True.

    Returns:
        tuple[dict, dict]: Native state (backbone + ``fc.*`` if the file has a
        linear classifier) and an info dict: ``path``, ``container``,
        ``format``, ``detected``, ``variant`` (see :func:`detect_variant`),
        ``dropped`` (``{key: reason}``), ``added``, ``meta``, ``nonfinite``
        (``{key: (NaNs, infinities)}``, empty unless allowed).

    Raises:
        CheckpointError: Naming the file and the problem;
            :class:`TensorShapeError` (each key with both shapes) and
            :class:`NonFiniteWeightsError` among them.
    """
    path, state, info = _read_state(path, trust, map_location, prefix)
    detected = fmt in ('auto', 'safetensors', None)
    if detected:
        fmt = 'auto'
        # Files we wrote say so in their metadata.
        if info['meta'].get('res2net_mm') or \
                info['meta'].get('format') == 'res2net_mm':
            fmt = 'native'
    elif fmt not in FORMATS:
        raise ValueError(f'unknown format {fmt!r}; valid: auto, safetensors, '
                         f'{", ".join(FORMATS)}')
    hint = ('Pass the format (fmt=/--from) and the variant (arch=/--arch) if '
            'the file is a Res2Net checkpoint')
    try:
        native, report = to_native(state, fmt)
    except FormatDetectionError as e:
        raise CheckpointError(path, str(e), hint) from None
    try:
        variant = detect_variant(native)
    except FormatDetectionError as e:
        if arch is None:
            raise CheckpointError(path, str(e), hint) from None
        variant = None  # ambiguous: the explicit arch decides (checked below)
    if arch is not None:
        variant = _check_arch(path, native, arch, variant)
    if check_architecture or arch is not None:
        architecture = variant if arch is None else \
            _named_architecture(arch, native)
        nonfinite = validate_native(native, architecture, str(path),
                                    allow_nonfinite, arch)
    else:
        nonfinite = check_finite(native, str(path), allow_nonfinite)
    dropped = dict(info['skipped'])
    dropped.update(report['dropped'])
    renamed = sum(1 for k in native if k not in state
                  and k not in report['added'])
    info.update(mapped=len(native) - len(report['added']), renamed=renamed)
    info.update(format=report['format'], detected=detected,
                variant=variant, dropped=dropped, added=report['added'],
                nonfinite=nonfinite)
    return native, info


def is_dla_backbone(model: nn.Module) -> bool:
    """Whether ``model`` has the Res2Net-DLA layout (``base_layer``,
    ``level0`` ... ``level5``) rather than the ResNet one the Res2Net key maps
    describe. Told by the layout (duck typing), not by class."""
    return all(hasattr(model, name) for name in ('base_layer', 'level5'))


def load_dla_checkpoint(path,
                        fmt: str = 'auto',
                        trust: bool = False,
                        map_location='cpu',
                        prefix: Optional[str] = None,
                        allow_nonfinite: bool = False) -> Tuple[Dict, Dict]:
    """Read Res2Net-DLA weights as a native state dict, values checked.

    The official files, timm's and res2net_mm's name the DLA weights the
    same way (see :func:`~.keymaps.dla_from_official` for the official
    extras); the shapes are checked against the backbone by
    :func:`load_native_into`.

    Args:
        path (str): Any file :func:`read_checkpoint` reads, a URL or a
            ``res2net_mm://`` name (see :func:`resolve_path`).
        fmt (str): ``'auto'``, ``'native'``, ``'official'`` or ``'timm'``
            (one naming); ``'safetensors'`` is a container and means
            ``'auto'``.
        trust (bool): Allow a full unpickle (see :func:`load_checkpoint_any`).
        map_location: Passed to ``torch.load``. Defaults to ``'cpu'``.
        prefix (str, optional): Keep only the keys under this prefix.
        allow_nonfinite (bool): Accept NaN / infinite values.

    Returns:
        tuple[dict, dict]: Native weights (the classifier ``fc.*`` included)
        and the info of :func:`load_checkpoint_any` (``variant`` None,
        ``architecture`` a description).

    Raises:
        CheckpointError: Naming the file and the problem.
        ValueError: For a format that is not a DLA naming.
    """
    namings = ('native', 'official', 'timm')
    if fmt not in ('auto', 'safetensors', None) + namings:
        raise ValueError(f'format {fmt!r} is not a Res2Net-DLA naming; '
                         f'valid: auto, safetensors, {", ".join(namings)}')
    path, state, info = _read_state(path, trust, map_location, prefix)
    native, dropped = dla_from_official(state)
    nonfinite = check_finite(native, str(path), allow_nonfinite)
    detected = fmt in ('auto', 'safetensors', None)
    if detected:  # only the official files carry the unused projections
        fmt = 'official' if dropped else 'timm'
    dropped.update(info['skipped'])
    info.update(format=fmt, detected=detected, variant=None,
                architecture='Res2Net-DLA (checked against the backbone key '
                'by key)', dropped=dropped, added=[], mapped=len(native),
                renamed=0, nonfinite=nonfinite)
    return native, info


def _check_arch(path, native: Mapping, arch: str,
                variant: Optional[Dict]) -> Dict:
    """Refuse weights of another architecture than the named variant."""
    expected = resolve_arch(arch)
    if variant is not None:
        diffs = variant_differences(variant, expected)
        if diffs:
            raise CheckpointError(
                path, f'holds a different architecture than {arch!r}: '
                f'{"; ".join(diffs)} (the file: {describe_variant(variant)})',
                'Use the matching variant or another file')
    # Key by key, what detection cannot see, is checked by validate_native.
    return _named_architecture(arch, native) if variant is None else variant


def _named_architecture(arch: str, native: Mapping) -> Dict:
    """A named variant as :func:`detect_variant` describes weights (with a
    classifier if ``native`` has one)."""
    fc = native.get('fc.weight')
    return dict(resolve_arch(arch), stem_channels=64, base_channels=64,
                in_channels=3, num_stages=4, variants=[arch],
                num_classes=None if fc is None else fc.shape[0])


def describe_load(info: Dict) -> str:
    """Human-readable summary of :func:`load_checkpoint_any`'s info."""
    how = 'detected' if info['detected'] else 'given'
    lines = [
        f"{info['path']}: {info['container']} file, {info['format']} naming "
        f'({how})',
        'architecture: ' + (describe_variant(info['variant'])
                            if info['variant'] else info['architecture']),
        f"mapped {info['mapped']} tensors to res2net_mm names "
        f"({info['renamed']} renamed, the rest already matching)",
    ]
    if info['added']:
        lines.append(f"filled in {len(info['added'])} BN num_batches_tracked "
                     f'(the source does not store them)')
    for reason, keys in _group(info['dropped']).items():
        lines.append(f'dropped {len(keys)} entries ({reason}): '
                     f'{_short(keys)}')
    if info.get('nonfinite'):
        n = len(info['nonfinite'])
        lines.append(f"kept {n} tensor{'s' if n > 1 else ''} with NaN or "
                     f"infinite values (allowed): "
                     f"{', '.join(list(info['nonfinite'])[:6])}")
    return '\n'.join(lines)


def _group(dropped: Mapping[str, str]) -> Dict[str, list]:
    groups: Dict[str, list] = {}
    for k, reason in dropped.items():
        groups.setdefault(reason, []).append(k)
    return groups


def _short(keys, n: int = 6) -> str:
    """``neck.* (12), bbox_head.* (10), meta`` for a list of keys."""
    groups: Dict[str, list] = {}
    for k in keys:
        groups.setdefault(k.split('.', 1)[0], []).append(k)
    parts = [f'{top}.* ({len(ks)})' if len(ks) > 1 or ks[0] != top else top
             for top, ks in groups.items()]
    return ', '.join(parts[:n]) + (f' ... (+{len(parts) - n} groups)'
                                   if len(parts) > n else '')


def check_fit(model_state: Mapping, native: Mapping,
              num_stages: Optional[int] = None) -> Dict[str, Any]:
    """Compare native weights with a backbone's own state dict.

    Args:
        model_state (Mapping): ``backbone.state_dict()`` (or shapes).
        native (Mapping): Native weights (classifier keys allowed).
        num_stages (int, optional): Stages the backbone has; weights of later
            stages are dropped rather than reported as unexpected.

    Returns:
        dict: ``fits`` (loadable keys), ``missing`` (model keys absent from
        the weights), ``unexpected`` (weights the model lacks), ``mismatched``
        (``{key: (weights shape, model shape)}``), ``dropped``
        (``{key: reason}``) and ``kept_init`` (deformable-conv offsets the
        weights lack: set to zero).
    """
    fits, unexpected, mismatched, dropped = {}, [], {}, {}
    for k, v in native.items():
        if CLASSIFIER.match(k):
            dropped[k] = 'classifier (a backbone has none)'
            continue
        stage = re.match(r'^layer(\d+)\.', k)
        if k not in model_state and stage and num_stages is not None and \
                int(stage.group(1)) > num_stages:
            dropped[k] = f'stage beyond the model\'s num_stages={num_stages}'
            continue
        if k not in model_state:
            unexpected.append(k)
        elif tuple(v.shape) != tuple(model_state[k].shape):
            mismatched[k] = (tuple(v.shape), tuple(model_state[k].shape))
        else:
            fits[k] = v
    # BN step counters only matter for momentum=None; MindSpore has none.
    # Deformable-conv offsets are not in classification weights: they start
    # at zero, as mmcv's DCN layers initialise them.
    missing, kept_init = [], []
    for k in model_state:
        if k in native or k.endswith('num_batches_tracked'):
            continue
        (kept_init if '.conv_offset.' in k else missing).append(k)
    return dict(fits=fits, missing=missing, unexpected=unexpected,
                mismatched=mismatched, dropped=dropped, kept_init=kept_init)


def format_mismatch(fit: Dict, model_state: Mapping, native: Mapping,
                    limit: int = 60) -> str:
    """List the problems of :func:`check_fit` with both shapes."""
    lines = []
    for k, (src, dst) in fit['mismatched'].items():
        lines.append(f'  {k}: checkpoint {src} vs model {dst}')
    for k in fit['missing']:
        lines.append(f'  {k}: missing from checkpoint, model '
                     f'{tuple(model_state[k].shape)}')
    for k in fit['unexpected']:
        lines.append(f'  {k}: checkpoint {tuple(native[k].shape)}, not in '
                     f'model')
    more = f'\n  ... and {len(lines) - limit} more' if len(lines) > limit \
        else ''
    return '\n'.join(lines[:limit]) + more


def load_native_into(model: nn.Module,
                     native: Mapping,
                     allow_mismatch: bool = False,
                     source: str = 'checkpoint',
                     variant: Optional[Dict] = None) -> Dict[str, Any]:
    """Copy native weights into a Res2Net backbone, strictly by default.

    Args:
        model (nn.Module): A :class:`Res2Net`.
        native (Mapping): Native weights.
        allow_mismatch (bool): Load what fits and log the rest instead of
            raising. Defaults to False.
        source (str): Name of the weights for messages.
        variant (dict, optional): :func:`detect_variant` of the weights, to
            explain a mismatch.

    Returns:
        dict: The :func:`check_fit` result.

    Raises:
        WeightMismatchError: With every key that does not fit and both shapes.
    """
    model_state = model.state_dict()
    fit = check_fit(model_state, native, getattr(model, 'num_stages', None))
    bad = fit['missing'] or fit['unexpected'] or fit['mismatched']
    if bad:
        detail = format_mismatch(fit, model_state, native)
        why = ''
        if variant is not None:
            why = f' The checkpoint is: {describe_variant(variant)}.'
        message = (f'{source}: weights do not fit the backbone '
                   f'({len(fit["mismatched"])} mis-shaped, '
                   f'{len(fit["missing"])} missing, '
                   f'{len(fit["unexpected"])} unexpected keys).{why}\n'
                   f'{detail}')
        if not allow_mismatch:
            raise WeightMismatchError(
                message + '\nBuild the backbone that matches the weights, or '
                'set allow_mismatch=True to load only the keys that fit.')
        print_log(message + '\nallow_mismatch=True: loading the keys that '
                  'fit.', logger='current', level=30)
    with torch.no_grad():
        for k in fit['kept_init']:
            model_state[k].zero_()  # model_state shares the model's storage
        result = model.load_state_dict(fit['fits'], strict=False)
    if fit['kept_init']:
        print_log(f'{source}: {len(fit["kept_init"])} deformable-conv offset '
                  'tensors are not in the weights; they start at zero',
                  logger='current')
    for k in result.unexpected_keys:  # cannot happen: fits is a subset
        raise RuntimeError(f'internal error: {k} unexpected')
    if fit['dropped']:
        print_log(f'{source}: dropped {len(fit["dropped"])} keys: '
                  f'{_short(fit["dropped"])} '
                  f'({"; ".join(sorted(set(fit["dropped"].values())))})',
                  logger='current')
    return fit


@WEIGHT_LOADERS.register_module(name='Pretrained')
def load_pretrained_from_init_cfg(model: nn.Module, init_cfg: dict) -> Dict:
    """Handle ``init_cfg=dict(type='Pretrained', ...)`` of a backbone.

    One loader for both layouts: a Res2Net (any naming of
    :func:`load_checkpoint_any`) and a Res2Net-DLA (told by
    :func:`is_dla_backbone`; read by :func:`load_dla_checkpoint`), with the
    same options, checks and errors.

    Args:
        model (nn.Module): The backbone.
        init_cfg (dict): ``checkpoint`` (path, URL or ``res2net_mm://``
            name), and optionally ``format`` (``'auto'``), ``prefix`` (keep
            keys under it, as mmengine's), ``map_location`` (``'cpu'``),
            ``allow_mismatch`` (False), ``allow_nonfinite`` (False: NaN /
            infinite values raise) and ``trust`` (False: see
            :func:`load_checkpoint_any`). Every shape is checked against the
            model's, every value must be finite, before anything is copied
            into the model.

    Returns:
        dict: The :func:`check_fit` result.

    Raises:
        KeyError: For an unknown ``init_cfg`` key.
        ValueError: Without ``checkpoint``.
        CheckpointError: For a file that cannot be used.
        WeightMismatchError: Weights that do not fit the backbone (every key
            with both shapes), unless ``allow_mismatch``.
    """
    known = {'type', 'checkpoint', 'format', 'prefix', 'map_location',
             'allow_mismatch', 'allow_nonfinite', 'trust'}
    unknown = set(init_cfg) - known
    if unknown:
        raise KeyError(f'unknown Pretrained init_cfg keys {sorted(unknown)} '
                       f'for {type(model).__name__}; valid: {sorted(known)}')
    if not init_cfg.get('checkpoint'):
        raise ValueError("init_cfg type='Pretrained' needs checkpoint=PATH")
    path = init_cfg['checkpoint']
    options = dict(
        fmt=init_cfg.get('format', 'auto'),
        trust=init_cfg.get('trust', False),
        map_location=init_cfg.get('map_location', 'cpu') or 'cpu',
        prefix=init_cfg.get('prefix'),
        allow_nonfinite=init_cfg.get('allow_nonfinite', False))
    if is_dla_backbone(model):
        native, info = load_dla_checkpoint(path, **options)
    else:
        # The model is the architecture: load_native_into checks every key
        # against it (a backbone with plugins has keys detection cannot see).
        native, info = load_checkpoint_any(path, check_architecture=False,
                                           **options)
    print_log(describe_load(info), logger='current')
    fit = load_native_into(
        model, native, allow_mismatch=init_cfg.get('allow_mismatch', False),
        source=str(path), variant=info['variant'])
    if info['format'] == 'mmdet' and getattr(model, 'stage_pool',
                                             None) != 'strided':
        print_log(f'{path}: mmdet weights; set stage_pool=\'strided\' on the '
                  'backbone to reproduce mmdet\'s outputs exactly (mmdet '
                  'skips the stride-1 stage pool).', logger='current')
    return fit


@WEIGHT_LOADERS.register_module(name='deep_stem_keys')
def rename_deep_stem_keys(state_dict: Dict, prefix: str) -> None:
    """Rename mmdet's / mmpretrain's deep-stem keys under ``prefix`` in place.

    A deep-stem :class:`~res2net_mm.models.Res2Net` calls it from its
    ``_load_from_state_dict`` (as ``'deep_stem_keys'`` in
    :data:`~res2net_mm.registry.WEIGHT_LOADERS`), so their files (a
    published mmdet detector given to mmengine's ``load_checkpoint`` or
    ``load_from=``) load directly instead of being skipped by a non-strict
    load with a warning.

    Args:
        state_dict (dict): The state dict being loaded (changed in place).
        prefix (str): The backbone's prefix in it, e.g. ``'backbone.'``.
    """
    local = [k[len(prefix):] for k in state_dict
             if k.startswith(prefix + 'stem.')]
    for old, new in native_stem_names(local).items():
        state_dict[prefix + new] = state_dict.pop(prefix + old)


__all__ = ['load_checkpoint_any', 'load_pretrained_from_init_cfg',
           'load_dla_checkpoint', 'load_native_into', 'check_fit',
           'describe_load', 'backbone_kwargs', 'is_dla_backbone',
           'rename_deep_stem_keys']
