"""Fused conv + bias (+ residual add) + ReLU kernels for deploy-mode inference.

PyTorch's CPU build ships oneDNN "post-op" convolutions
(``torch.ops.mkldnn._convolution_pointwise``), the kernels ``torch.compile``
uses on CPU. They apply the bias, the residual addition and the ReLU while the
conv output is still in cache, instead of three more passes over memory. They
have no autograd, no ONNX symbolic and no GPU version, so every other case
(training, gradients, tracing, export, compile, CUDA, half precision) runs the
plain ``F.conv2d`` + ``add`` + ``relu`` sequence, which computes the same values.

Given a plain weight, every oneDNN call first reorders it into the blocked
layout its kernel reads; a deploy model's weights do not change, so each conv's
reordered weight is kept (per input shape, as ``torch.compile``'s freezing
does: one more copy of the weights in memory) and the reorder runs once. The
cache notices in-place changes made through the parameter (its version
counter: ``load_state_dict``, optimizer steps) and a replaced parameter; writes
through ``.data`` bypass the counter.

Only torch is imported here, so the backbone can use these helpers without
pulling in anything else.
"""
import sys
import weakref
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

_HAS_MKLDNN_POINTWISE = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, '_convolution_pointwise')
    and hasattr(torch._C._nn, 'mkldnn_reorder_conv2d_weight'))

# conv -> (weight, key, weight in oneDNN's layout); dropped with the conv.
_PACKED: 'weakref.WeakKeyDictionary[nn.Conv2d, tuple]' = \
    weakref.WeakKeyDictionary()


def _dynamo_is_compiling() -> bool:
    """``torch.compiler.is_compiling`` for torch < 2.3, which has only the
    private ``torch._dynamo.is_compiling``. Nothing compiles before dynamo
    is imported, so this does not import it."""
    return 'torch._dynamo' in sys.modules and torch._dynamo.is_compiling()


# Looked up once: public since torch 2.3.
_is_compiling = getattr(torch.compiler, 'is_compiling', _dynamo_is_compiling)


def exporting() -> bool:
    """Whether this forward is being scripted, traced, compiled or exported
    to ONNX (the fused kernels have no symbolic for any of them)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    if _is_compiling():
        return True
    onnx = getattr(torch, 'onnx', None)
    return bool(onnx is not None and onnx.is_in_onnx_export())


def use_onednn(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether the fused oneDNN kernel may replace ``conv`` on ``x``.

    Args:
        x (Tensor): The conv input.
        conv (nn.Conv2d): A plain conv with ``padding_mode='zeros'``.

    Returns:
        bool: True on CPU, float32, without autograd and outside tracing,
        scripting, ``torch.compile`` and ONNX export.
    """
    if not _HAS_MKLDNN_POINTWISE or x.device.type != 'cpu':
        return False
    if x.dtype != torch.float32 or conv.weight.dtype != torch.float32:
        return False
    if conv.padding_mode != 'zeros' or isinstance(conv.padding, str):
        return False
    if torch.is_grad_enabled() and (x.requires_grad
                                    or conv.weight.requires_grad):
        return False
    return not exporting()


def packed_weight(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv.weight`` reordered for oneDNN convs of inputs shaped like
    ``x``, made once and kept until the weight or the input shape changes.

    Args:
        conv (nn.Conv2d): A conv that :func:`use_onednn` accepted.
        x (Tensor): Its input.

    Returns:
        Tensor: An MKLDNN tensor, or the plain weight when it is an inference
        tensor (which has no version counter to tell a change).
    """
    w = conv.weight
    if w.is_inference():
        return w
    # The weight itself is held (not its address or id, which a new tensor
    # could reuse once the old one is freed).
    key = (w.data_ptr(), w._version, tuple(x.shape),
           x.is_contiguous(memory_format=torch.channels_last))
    hit = _PACKED.get(conv)
    if hit is not None and hit[0] is w and hit[1] == key:
        return hit[2]
    packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
        w.detach().contiguous().to_mkldnn(), list(conv.padding),
        list(conv.stride), list(conv.dilation), conv.groups, list(x.shape))
    _PACKED[conv] = (w, key, packed)
    return packed


def conv_act(x: torch.Tensor,
             conv: nn.Conv2d,
             relu: bool = True,
             residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``relu(conv(x) [+ residual])`` with the conv's own bias.

    Args:
        x (Tensor): Input of ``conv``.
        conv (nn.Conv2d): The (BN-folded) conv.
        relu (bool): Apply ReLU at the end. Defaults to True.
        residual (Tensor, optional): Added to the conv output before the ReLU.

    Returns:
        Tensor: The result, in a new tensor (``x`` and ``residual`` are not
        modified).
    """
    if type(conv) is nn.Conv2d and use_onednn(x, conv) and (
            residual is None or residual.shape[0] == x.shape[0]):
        args = (packed_weight(conv, x), conv.bias, list(conv.padding),
                list(conv.stride), list(conv.dilation), conv.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, *args, 'relu' if relu else 'none', [], '')
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, *args, 'add', None, 'relu' if relu else None, [], '')
    out = conv(x)
    if residual is not None:
        out = out + residual
    return F.relu(out, inplace=True) if relu else out
