"""BN folding and fused conv kernels: what deploy mode is built from.

A BN in eval mode is an affine map per channel, so it folds into the conv
before it (:func:`fold_bn`). The folded conv is a :class:`FusedConv2d`,
which also carries the ReLU (and, for a block's last conv, the residual
addition) that follows it. On CPU, PyTorch ships oneDNN "post-op"
convolutions (``torch.ops.mkldnn._convolution_pointwise``, the kernels
``torch.compile`` uses there); they apply the bias, the residual and the ReLU
while the conv output is still in cache, instead of three more passes over
memory. They are private to torch and have no autograd, no ONNX symbolic and
no GPU version, so every other case (gradients, tracing, export, compile,
CUDA, half precision, a torch without them) runs the public ``F.conv2d`` +
``add`` + ``relu``, which computes the same values.

Given a plain weight, every oneDNN call first reorders it into the blocked
layout its kernel reads; a deploy model's weights do not change, so each
conv's reordered weight is kept (per input shape, as ``torch.compile``'s
freezing does: one more copy of the weights in memory). The cache notices
in-place changes made through the parameter (its version counter:
``load_state_dict``, optimizer steps) and a replaced parameter; writes
through ``.data`` bypass the counter.
"""
import weakref
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.torch_compat import exporting

HAS_MKLDNN_POINTWISE = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, '_convolution_pointwise')
    and hasattr(torch._C._nn, 'mkldnn_reorder_conv2d_weight'))

# conv -> (weight, key, weight in oneDNN's layout); dropped with the conv.
_PACKED: 'weakref.WeakKeyDictionary[nn.Conv2d, tuple]' = \
    weakref.WeakKeyDictionary()


def use_onednn(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether the fused oneDNN kernel may replace ``conv`` on ``x``.

    Args:
        x (Tensor): The conv input.
        conv (nn.Conv2d): A plain conv with ``padding_mode='zeros'``.

    Returns:
        bool: True on CPU, float32, without autograd and outside tracing,
        scripting, ``torch.compile`` and ONNX export, where torch has the
        kernels.
    """
    if not HAS_MKLDNN_POINTWISE or x.device.type != 'cpu':
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
        conv (nn.Conv2d): A plain conv (``nn.Conv2d`` or
            :class:`FusedConv2d`).
        relu (bool): Apply ReLU at the end. Defaults to True.
        residual (Tensor, optional): Added to the conv output before the ReLU.

    Returns:
        Tensor: The result, in a new tensor (``x`` and ``residual`` are not
        modified).
    """
    if use_onednn(x, conv) and (residual is None
                                or residual.shape[0] == x.shape[0]):
        args = (packed_weight(conv, x), conv.bias, list(conv.padding),
                list(conv.stride), list(conv.dilation), conv.groups)
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, *args, 'relu' if relu else 'none', [], '')
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, *args, 'add', None, 'relu' if relu else None, [], '')
    out = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding,
                   conv.dilation, conv.groups)
    if residual is not None:
        out = out + residual
    return F.relu(out, inplace=True) if relu else out


class FusedConv2d(nn.Conv2d):
    """A conv with a BN folded into its weight and bias, and the ReLU that
    followed the BN: one oneDNN kernel on CPU (see :func:`conv_act`).

    ``forward(x, residual)`` also adds a residual before the ReLU, for a
    block's last conv.

    Args:
        *args: ``nn.Conv2d``'s arguments.
        relu (bool): Apply a ReLU after the (residual) addition.
        **kwargs: ``nn.Conv2d``'s keyword arguments.
    """

    def __init__(self, *args, relu: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu = relu

    def forward(self, x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return conv_act(x, self, relu=self.relu, residual=residual)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', relu={self.relu}'


def _plain_conv(conv: nn.Module) -> bool:
    """A conv whose forward is exactly ``F.conv2d`` with zero padding.

    Subclasses that change the weight (weight standardisation) or the
    sampling (deformable convs) cannot absorb a BN, nor can a conv that
    already applies a ReLU.
    """
    if not isinstance(conv, nn.Conv2d) or conv.padding_mode != 'zeros':
        return False
    if type(conv) is nn.Conv2d:
        return True
    if type(conv) is FusedConv2d:
        return not conv.relu
    # mmcv's wrapper only adds support for empty inputs.
    return (type(conv).__name__ == 'Conv2d'
            and type(conv).__module__.startswith('mmcv.cnn'))


def _foldable_bn(norm: nn.Module) -> bool:
    return (isinstance(norm, _BatchNorm) and norm.track_running_stats
            and norm.running_mean is not None)


def can_fold(conv: nn.Module, norm: nn.Module) -> bool:
    """Whether :func:`fold_bn` can fold ``norm`` into ``conv``: a BN with
    running statistics, or an identity (a BN folded already, e.g. by mmcv's
    ``fuse_conv_bn``)."""
    return _plain_conv(conv) and (isinstance(norm, nn.Identity)
                                  or _foldable_bn(norm))


def _fused_like(conv: nn.Conv2d, relu: bool, bias: bool,
                n: int = 1) -> FusedConv2d:
    """An empty :class:`FusedConv2d` with ``conv``'s geometry, device and
    dtype, for ``n`` such convs side by side (``n`` times the channels and
    groups)."""
    return FusedConv2d(
        conv.in_channels * n,
        conv.out_channels * n,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups * n,
        bias=bias,
        relu=relu,
        device=conv.weight.device,
        dtype=conv.weight.dtype)


def _same_layout(new: nn.Conv2d, old: nn.Conv2d) -> nn.Conv2d:
    """``new`` in ``old``'s memory format (channels_last stays so),
    trainability and mode."""
    if old.weight.is_contiguous(memory_format=torch.channels_last) and \
            not old.weight.is_contiguous():
        new.to(memory_format=torch.channels_last)
    new.requires_grad_(old.weight.requires_grad)
    new.train(old.training)
    return new


def fold_bn(conv: nn.Conv2d, bn: nn.Module, relu: bool = False) -> FusedConv2d:
    """A new conv computing ``bn(conv(x))`` with BN's running statistics
    (then ReLU if ``relu``). ``bn`` may be an ``nn.Identity`` (folded
    already).

    The arithmetic is done in float64 and cast back, so the folded weights
    are as close to the exact product as the dtype allows.

    Args:
        conv (nn.Conv2d): A plain 2D conv, with or without bias.
        bn (_BatchNorm): The BN applied to its output (eval statistics).
        relu (bool): Whether the fused conv applies the ReLU that follows.

    Returns:
        FusedConv2d: A conv with bias, on the conv's device and dtype.

    Raises:
        TypeError: If the conv is not a plain conv or the norm is not a BN
            with running statistics.
    """
    if not _plain_conv(conv):
        raise TypeError(f'cannot fold a BN into {type(conv).__name__}: only '
                        f'plain nn.Conv2d (zero padding) can absorb it')
    if isinstance(bn, nn.Identity):
        return _as_fused(conv, relu)
    if not _foldable_bn(bn):
        raise TypeError(f'cannot fold {type(bn).__name__} into a conv: only '
                        f'batch norms with running statistics can be folded')
    if bn.num_features != conv.out_channels:
        raise ValueError(f'BN has {bn.num_features} channels but the conv '
                         f'outputs {conv.out_channels}')
    dtype = conv.weight.dtype
    with torch.no_grad():
        std = (bn.running_var.double() + bn.eps).sqrt()
        scale = 1 / std
        if bn.affine:
            scale = bn.weight.double() * scale
        shift = -bn.running_mean.double() * scale
        if bn.affine:
            shift = shift + bn.bias.double()
        if conv.bias is not None:
            shift = shift + conv.bias.double() * scale
        fused = _fused_like(conv, relu, bias=True)
        fused.weight.copy_(
            (conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
        fused.bias.copy_(shift.to(dtype))
    return _same_layout(fused, conv)


def _as_fused(conv: nn.Conv2d, relu: bool) -> FusedConv2d:
    fused = _fused_like(conv, relu, bias=conv.bias is not None)
    with torch.no_grad():
        fused.weight.copy_(conv.weight)
        if conv.bias is not None:
            fused.bias.copy_(conv.bias)
    return _same_layout(fused, conv)


def fold_pair(conv: nn.Module,
              norm: nn.Module) -> tuple:
    """Fold ``norm`` into ``conv`` where possible.

    Returns:
        tuple: ``(folded conv, nn.Identity())``, or the pair unchanged when it
        cannot be folded (deformable conv, GN, BN without statistics, or a
        norm that is already an identity).
    """
    if isinstance(norm, nn.Identity) or not can_fold(conv, norm):
        return conv, norm
    return fold_bn(conv, norm), nn.Identity()


def group_convs(convs: List[nn.Conv2d]) -> FusedConv2d:
    """One grouped conv computing ``cat([c(x_i) for c, x_i])``.

    ``x`` is the concatenation of the inputs ``x_i`` along channels; the
    convs must share every setting (the ReLU included) and all have biases
    or none.

    Raises:
        ValueError: If the convs differ in shape or settings.
    """
    c0 = convs[0]
    relu = getattr(c0, 'relu', False)
    for c in convs:
        if (c.weight.shape != c0.weight.shape or c.stride != c0.stride
                or c.padding != c0.padding or c.dilation != c0.dilation
                or c.groups != c0.groups or (c.bias is None) !=
                (c0.bias is None) or getattr(c, 'relu', False) != relu
                or not isinstance(c, nn.Conv2d)
                or c.padding_mode != 'zeros'):
            raise ValueError('group_convs needs plain convs with identical '
                             'shapes and settings')
    grouped = _fused_like(c0, relu, bias=c0.bias is not None, n=len(convs))
    with torch.no_grad():
        grouped.weight.copy_(torch.cat([c.weight for c in convs]))
        if c0.bias is not None:
            grouped.bias.copy_(torch.cat([c.bias for c in convs]))
    return _same_layout(grouped, c0)


def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Fold every BN that follows a conv in ``seq`` into it, and a ReLU that
    follows the pair too (stems, shortcuts, conv levels).

    The result has the same indices (``downsample.0/.1/.2`` keep their
    meaning): a folded BN and an absorbed ReLU become ``nn.Identity``.
    """
    layers = list(seq)
    for i in range(len(layers) - 1):
        if not (_plain_conv(layers[i]) and _foldable_bn(layers[i + 1])):
            continue
        relu = i + 2 < len(layers) and type(layers[i + 2]) is nn.ReLU
        layers[i] = fold_bn(layers[i], layers[i + 1], relu=relu)
        layers[i + 1] = nn.Identity()
        if relu:
            layers[i + 2] = nn.Identity()
    return nn.Sequential(*layers)
