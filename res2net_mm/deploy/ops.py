"""Fused conv + bias (+ residual add) + ReLU kernels for deploy-mode inference.

PyTorch's CPU build ships oneDNN "post-op" convolutions
(``torch.ops.mkldnn._convolution_pointwise``), the kernels ``torch.compile``
uses on CPU. They apply the bias, the residual addition and the ReLU while the
conv output is still in cache, instead of three more passes over memory. They
have no autograd, no ONNX symbolic and no GPU version, so every other case
(training, gradients, tracing, export, compile, CUDA, half precision) runs the
plain ``F.conv2d`` + ``add`` + ``relu`` sequence, which computes the same values.

Only torch is imported here, so the backbone can use these helpers without
pulling in anything else.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

_HAS_MKLDNN_POINTWISE = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, '_convolution_pointwise'))


def exporting() -> bool:
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    if torch.compiler.is_compiling():
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
        args = (conv.weight, conv.bias, list(conv.padding),
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
