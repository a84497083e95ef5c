"""Check native Res2Net weights before they are used or written.

Pure checks over a flat native state dict (see :func:`.detect.to_native`):
every tensor's shape against the architecture the weights claim (detected
from them or named by the user), and every value finite. They raise; nothing
is changed. A converter calls :func:`validate_native` between reading and
writing, so a file that fails writes nothing.
"""
import re
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from ..models.res2net import Res2Net
from .detect import backbone_kwargs
from .errors import NonFiniteWeightsError, TensorShapeError

Shapes = Dict[str, Tuple[int, ...]]
_LIMIT = 40  # problems listed in one message
# A deformable conv's offset predictor: not in the architecture detected from
# the weights (which cannot tell deformable layers), checked against its conv.
_OFFSET = re.compile(r'^(?P<conv>.+)\.conv_offset\.(?P<leaf>weight|bias)$')


def _count(n: int, verb: str = 'do', singular: str = 'does') -> str:
    return f'{n} tensors {verb}' if n != 1 else f'1 tensor {singular}'


def architecture_shapes(variant: Dict) -> Shapes:
    """Shapes of every tensor of the Res2Net a variant describes.

    Args:
        variant (dict): A :func:`.detect.detect_variant` result (the named
            variant's arguments plus ``stem_channels``, ``base_channels``,
            ``in_channels``, ``num_stages``, ``num_classes``).

    Returns:
        dict: ``{key: shape}`` of the backbone, plus ``fc.weight`` and
        ``fc.bias`` when ``num_classes`` is set.
    """
    kwargs = backbone_kwargs(variant)
    with torch.device('meta'):
        backbone = Res2Net(**kwargs, out_indices=(kwargs['num_stages'] - 1, ))
    shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    if variant.get('num_classes') is not None:
        features = backbone.out_channels[-1]
        shapes['fc.weight'] = (variant['num_classes'], features)
        shapes['fc.bias'] = (variant['num_classes'], )
    return shapes


def _offset_problem(key: str, shape, native: Mapping) -> Optional[str]:
    """What is wrong with a deformable-conv offset tensor, if anything."""
    m = _OFFSET.match(key)
    conv = native.get(m['conv'] + '.weight')
    if conv is None:
        return f'{key}: checkpoint {tuple(shape)}, no deformable conv ' \
            f'{m["conv"]}.weight for it'
    _, in_per_group, kh, kw = conv.shape
    # DCN predicts 2 offsets per kernel tap, modulated DCN 3 (+ a mask).
    rows_ok = len(shape) >= 1 and shape[0] > 0 and (
        shape[0] % (2 * kh * kw) == 0 or shape[0] % (3 * kh * kw) == 0)
    if m['leaf'] == 'bias':
        return None if len(shape) == 1 and rows_ok else \
            f'{key}: checkpoint {tuple(shape)}, expected (k * {kh * kw},)'
    if len(shape) == 4 and rows_ok and tuple(shape[2:]) == (kh, kw) and \
            shape[1] % in_per_group == 0:
        return None
    return (f'{key}: checkpoint {tuple(shape)}, expected (k * {kh * kw}, '
            f'C, {kh}, {kw}) for conv {m["conv"]} {tuple(conv.shape)}')


def check_shapes(native: Mapping, expected: Mapping, source: str,
                 what: str = 'the architecture') -> None:
    """Every tensor's shape against the architecture's, key by key.

    Args:
        native (Mapping): Native weights.
        expected (Mapping): ``{key: shape}`` (see :func:`architecture_shapes`).
        source (str): Name of the weights, for the message.
        what (str): What ``expected`` is, for the message.

    Raises:
        TensorShapeError: Listing each mis-shaped key with both shapes, and
            the keys one side lacks (BN step counters aside: the formats
            without them get them filled in).
    """
    problems = []
    for k, v in native.items():
        shape = tuple(v.shape)
        if k in expected:
            if shape != tuple(expected[k]):
                problems.append(f'{k}: checkpoint {shape} vs expected '
                                f'{tuple(expected[k])}')
        elif _OFFSET.match(k):
            problem = _offset_problem(k, shape, native)
            if problem:
                problems.append(problem)
        else:
            problems.append(f'{k}: checkpoint {shape}, not in it')
    for k, shape in expected.items():
        if k not in native and not k.endswith('num_batches_tracked'):
            problems.append(f'{k}: missing from checkpoint, expected '
                            f'{tuple(shape)}')
    if problems:
        more = f'\n  ... and {len(problems) - _LIMIT} more' \
            if len(problems) > _LIMIT else ''
        raise TensorShapeError(
            source, f'{_count(len(problems))} not fit {what}:\n  '
            + '\n  '.join(problems[:_LIMIT]) + more,
            'The file is damaged or not the architecture it appears to be; '
            'name the variant with arch=/--arch, or use another file')


def _nonfinite(value) -> Tuple[int, int, int]:
    """(NaNs, infinities, values) of a floating tensor or array."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor) or not (
            value.is_floating_point() or value.is_complex()):
        return 0, 0, 0
    nan = int(torch.isnan(value).sum())
    inf = int(torch.isinf(value).sum())
    return nan, inf, value.numel()


def check_finite(state: Mapping, source: str,
                 allow_nonfinite: bool = False) -> Dict[str, Tuple[int, int]]:
    """Refuse NaN and infinite values (training that diverged, a bad export).

    Args:
        state (Mapping): Weights (tensors or numpy arrays).
        source (str): Name of the weights, for the message.
        allow_nonfinite (bool): Return what was found instead of raising.

    Returns:
        dict: ``{key: (NaNs, infinities)}`` of the tensors that have any.

    Raises:
        NonFiniteWeightsError: Unless ``allow_nonfinite``, naming each tensor
            with its counts.
    """
    found, lines = {}, []
    for k, v in state.items():
        nan, inf, total = _nonfinite(v)
        if nan or inf:
            found[k] = (nan, inf)
            lines.append(f'{k}: {nan} NaN and {inf} infinite of {total} '
                         'values')
    if found and not allow_nonfinite:
        more = f'\n  ... and {len(lines) - _LIMIT} more' \
            if len(lines) > _LIMIT else ''
        raise NonFiniteWeightsError(
            source, f'{_count(len(found), "hold", "holds")} non-finite '
            'values:\n  '
            + '\n  '.join(lines[:_LIMIT]) + more,
            'Use weights from before the training diverged, or pass '
            'allow_nonfinite=True (--allow-nonfinite) to accept them')
    return found


def validate_native(native: Mapping, variant: Dict, source: str,
                    allow_nonfinite: bool = False,
                    arch: Optional[str] = None) -> Dict[str, Tuple[int, int]]:
    """All checks of converted weights: shapes against the architecture
    (``variant``, detected from the weights or of the named ``arch``), then
    finite values.

    Args:
        native (Mapping): Native weights.
        variant (dict): The architecture (see :func:`architecture_shapes`).
        source (str): Name of the weights, for messages.
        allow_nonfinite (bool): Accept NaN / infinite values.
        arch (str, optional): The named variant, for messages.

    Returns:
        dict: The non-finite tensors found (empty unless allowed).

    Raises:
        TensorShapeError: A tensor that does not fit the architecture.
        NonFiniteWeightsError: NaN or infinite values, unless allowed.
    """
    what = f'variant {arch!r}' if arch else 'the architecture ' \
        'detected from the file'
    check_shapes(native, architecture_shapes(variant), source, what)
    return check_finite(native, source, allow_nonfinite)


__all__ = ['architecture_shapes', 'check_shapes', 'check_finite',
           'validate_native']
