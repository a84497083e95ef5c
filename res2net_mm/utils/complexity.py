"""Parameter and multiply-accumulate counting: the one counter of res2net_mm.

Everything in res2net_mm that reports FLOPs counts with
:func:`count_complexity`: the variant table and its tests (:func:`count_macs`),
``tools/analysis_tools/get_flops.py`` (classifiers, detectors, segmentors) and
the MFU column of ``tools/analysis_tools/benchmark.py``. It runs one forward
under torch's ``FlopCounterMode`` (``torch.utils.flop_counter``), which sees
every operator the forward dispatches, whatever Python runs around it (data
samples, proposals, NMS), without tracing.

Two figures, both in multiply-accumulates (MACs, 1 per multiply-add: the
convention of the Res2Net paper, timm and the model zoos' "GMACs"/"FLOPs"):

- ``macs``: convolutions and matrix products (linear layers, attention), the
  operators torch's counter knows. This is the figure of the variant table.
- ``macs_all``: ``macs`` plus normalisation, pooling and resampling, at the
  per-element costs of mmengine's (fvcore's) analysis: inference batch norm 2
  with an affine transform (1 without), training batch norm and group / layer
  norm 5 (4), pooling and mean 1 per input element, upsampling 1 per output
  element. Activations and additions are left out, as there.
"""
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
# Whether this torch's counter attributes operators to the modules that ran
# them (torch >= 2.4); :attr:`Complexity.by_module` is empty where not.
TRACKS_MODULES = hasattr(FlopCounterMode(display=False), 'mod_tracker')


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)


@dataclass
class Complexity:
    """What :func:`count_complexity` counted for one forward.

    Attributes:
        macs (int): Convolutions and matrix products.
        macs_all (int): ``macs`` plus normalisation, pooling, resampling.
        by_operator (dict): ``{'aten.convolution': MACs, ...}``.
        by_module (dict): The model's direct children that ran operators,
            ``{'backbone': {'macs': ..., 'macs_all': ...}, ...}``; empty when
            the installed torch's counter does not track modules.
    """
    macs: int
    macs_all: int
    by_operator: Dict[str, int] = field(default_factory=dict)
    by_module: Dict[str, Dict[str, int]] = field(default_factory=dict)


def _shape(x):
    """Formulas get shapes from newer torch and tensors from older."""
    return tuple(x.shape) if isinstance(x, torch.Tensor) else x


def _numel(shape) -> int:
    n = 1
    for d in _shape(shape):
        n *= d
    return n


def _output(out_shape, out_val, out):
    """The operator's (first) output, however this torch passes it."""
    value = next(v for v in (out_shape, out_val, out, ()) if v is not None)
    if isinstance(value, (list, tuple)) and value and \
            isinstance(value[0], (list, tuple, torch.Size, torch.Tensor)):
        value = value[0]  # (output, saved mean, saved invstd, ...)
    return _shape(value)


# Every formula returns FLOPs (2 per MAC), the unit of torch's own formulas.
def _per_input_element(cost: int):

    def formula(x, *args, out_shape=None, out_val=None, out=None, **kwargs):
        return 2 * cost * _numel(x)

    return formula


def _per_output_element(x, *args, out_shape=None, out_val=None, out=None,
                        **kwargs):
    return 2 * _numel(_output(out_shape, out_val, out))


def _batch_norm(training):
    """``training``: the flag's position in the operator's arguments, or the
    mode itself for operators of one mode."""

    def formula(x, weight=None, *args, out_shape=None, out_val=None, out=None,
                **kwargs):
        is_training = training
        if not isinstance(training, bool):  # args start after input, weight
            is_training = bool(args[training - 2]) if len(args) > \
                training - 2 else bool(kwargs.get('training', False))
        affine = weight is not None
        cost = (5 if affine else 4) if is_training else (2 if affine else 1)
        return 2 * cost * _numel(x)

    return formula


def _group_or_layer_norm(weight_arg: int):

    def formula(x, *args, out_shape=None, out_val=None, out=None, **kwargs):
        affine = len(args) >= weight_arg and args[weight_arg - 1] is not None
        return 2 * (5 if affine else 4) * _numel(x)

    return formula


def _extra_formulas() -> Dict[Any, Any]:
    """The operators of ``macs_all`` beyond torch's own (that exist here)."""
    wanted = {
        # native_batch_norm(input, weight, bias, mean, var, training, ...)
        'native_batch_norm': _batch_norm(5),
        '_native_batch_norm_legit': _batch_norm(5),
        '_native_batch_norm_legit_no_training': _batch_norm(False),
        '_batch_norm_with_update': _batch_norm(True),
        'cudnn_batch_norm': _batch_norm(5),
        'miopen_batch_norm': _batch_norm(5),
        # native_group_norm(input, weight, bias, N, C, HxW, group, eps)
        'native_group_norm': _group_or_layer_norm(1),
        # native_layer_norm(input, normalized_shape, weight, bias, eps)
        'native_layer_norm': _group_or_layer_norm(2),
        'max_pool2d_with_indices': _per_input_element(1),
        'avg_pool2d': _per_input_element(1),
        '_adaptive_avg_pool2d': _per_input_element(1),
        'adaptive_max_pool2d': _per_input_element(1),
        'mean': _per_input_element(1),  # global average pooling
        'upsample_nearest2d': _per_output_element,
        'upsample_bilinear2d': _per_output_element,
        'upsample_bicubic2d': _per_output_element,
        'grid_sampler_2d': _per_output_element,
    }
    return {getattr(aten, name): f for name, f in wanted.items()
            if hasattr(aten, name)}


def _by_module(counts: Dict[str, Dict[Any, int]], root: str,
               extra: set) -> Dict[str, Dict[str, int]]:
    """Totals of the root's direct children from the counter's names.

    The counter adds an operator to every module being run, named
    ``Root.child.grandchild``; a child whose ``forward`` is called directly
    (mmdet's ``roi_head.forward``) is missing while its own children are
    present, so each child sums its outermost recorded descendants.
    """
    names = [n for n in counts if n.startswith(root + '.')]
    outermost = [n for n in names if not any(
        n.startswith(other + '.') for other in names if other != n)]
    parts: Dict[str, Dict[str, int]] = defaultdict(
        lambda: dict(macs=0, macs_all=0))
    for name in outermost:
        child = name[len(root) + 1:].split('.', 1)[0]
        for op, flops in counts[name].items():
            parts[child]['macs_all'] += flops // 2
            if op not in extra:
                parts[child]['macs'] += flops // 2
    return dict(parts)


@torch.no_grad()
def count_complexity(model: nn.Module, *inputs, **kwargs) -> Complexity:
    """Count one forward ``model(*inputs, **kwargs)`` in eval mode.

    Args:
        model (nn.Module): The model; its train/eval mode is restored after.
        *inputs: Positional arguments of the forward.
        **kwargs: Keyword arguments of the forward (e.g. ``mode='tensor'``).

    Returns:
        Complexity: ``macs``, ``macs_all``, ``by_operator``, ``by_module``.
    """
    extras = _extra_formulas()
    # Older torch (no module tracker) names modules only through hooks on a
    # module it is given, and those hooks break forwards that pass tuples or
    # data samples between modules: count globally there (by_module empty).
    counter = FlopCounterMode(display=False, custom_mapping=extras)
    was_training = model.training
    model.eval()
    try:
        with counter:
            model(*inputs, **kwargs)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    by_op = {str(op): flops // 2
             for op, flops in counts.get('Global', {}).items()}
    extra_names = {str(op) for op in extras}
    return Complexity(
        macs=sum(v for k, v in by_op.items() if k not in extra_names),
        macs_all=sum(by_op.values()),
        by_operator=by_op,
        by_module=_by_module(counts, type(model).__name__, set(extras)))


def count_macs(model: nn.Module,
               input_shape: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of the convolutions and linear layers (and any
    other matrix product) of one forward pass of a zero image.

    Norms, activations, pooling and additions are left out, which is the
    convention of the Res2Net paper, timm and most model zoos ("GMACs" or
    "FLOPs"). Counts are per sample when ``input_shape[0] == 1``. See
    :func:`count_complexity`.

    Args:
        model (nn.Module): The model; its train/eval mode is restored after.
        input_shape (Sequence[int]): Shape of the dummy input.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else 'cpu'
    return count_complexity(model, torch.zeros(*input_shape,
                                               device=device)).macs
