"""The hierarchical split convs of a Res2Net block (Sec. 3.1 of the paper),
and the faster implementations of the same function.

:func:`hierarchical_splits` is the reference: split, a 3x3 conv + BN + ReLU
per split, each (but the first) fed the previous output plus its own split,
concatenate. The blocks choose among the others, in one place each
(``Bottle2neck._multi_scale``):

- :func:`grouped_stage_splits`: in a stage block the splits are independent,
  so their convs run as one grouped conv and their BNs as one BN.
- :class:`ChainedSplits`: in the other blocks, in training, the same kernels
  forward and backward as autograd, keeping less for backward.

Memory-lean training (:class:`ChainedSplits`): run op by op, autograd keeps,
for every split ``i``, the conv input ``y[i-1] + x[i]`` and the ReLU output
``y[i]``, although every ``y[i]`` is also kept inside the block's
concatenation (conv3 saves it) and the conv input is one addition of two
tensors that are kept anyway. :class:`ChainedSplits` runs the same kernels
forward, and in backward the same backward kernels autograd would run, but
keeps only the BN inputs: the ReLU masks are read from the concatenation and
the conv inputs recomputed. Same numbers; ``2 * scales - 3`` fewer activation
tensors per block.

The BN kernels it calls are the ones ``F.batch_norm`` runs. torch >= 2.3 has
``aten._batch_norm_with_update`` / ``_batch_norm_no_update`` /
``batch_norm_backward`` (which pick cuDNN, MIOpen or the native kernel as
``F.batch_norm`` does); they are looked up once, at import. Older torch (2.1,
2.2) runs ``aten.native_batch_norm`` on CPU, so there ChainedSplits uses it;
on other devices those versions' ``F.batch_norm`` may pick cuDNN, which has no
public op, and the block runs op by op (:func:`can_chain` says which).
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

_aten = torch.ops.aten

# The BN ops of torch >= 2.3 (see the module docstring); False on 2.1 / 2.2.
HAS_BN_WITH_UPDATE = all(
    hasattr(_aten, op) for op in ('_batch_norm_with_update',
                                  '_batch_norm_no_update',
                                  'batch_norm_backward'))


def _autocast_takes_device() -> bool:
    try:
        torch.is_autocast_enabled('cpu')
    except TypeError:  # torch < 2.4: no argument, CUDA only
        return False
    return True


_AUTOCAST_TAKES_DEVICE = _autocast_takes_device()


def autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` on every torch >= 2.1.

    Before torch 2.4 each device has its own getter
    (``torch.is_autocast_cpu_enabled``, ``torch.is_autocast_enabled`` for
    CUDA, ``torch.is_autocast_xpu_enabled``, ...); those are deprecated since.
    """
    if _AUTOCAST_TAKES_DEVICE:
        return torch.is_autocast_enabled(device_type)
    if device_type == 'cuda':
        return torch.is_autocast_enabled()
    getter = getattr(torch, f'is_autocast_{device_type}_enabled', None)
    return bool(getter()) if getter is not None else False


def can_chain(device_type: str) -> bool:
    """Whether :class:`ChainedSplits` reproduces autograd on this device now:
    not under autocast (whose casts it would have to replay), and with the BN
    kernels ``F.batch_norm`` runs there (see the module docstring).

    Args:
        device_type (str): The input's ``device.type``.
    """
    if autocast_enabled(device_type):
        return False
    return HAS_BN_WITH_UPDATE or device_type == 'cpu'


def _batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, ...]:
    """``bn(x)`` as ``nn.BatchNorm2d.forward`` computes it, with the
    statistics its backward needs (the kernels ``F.batch_norm`` runs):
    ``(out, save_mean, save_rstd, reserve)``."""
    if bn.training:
        bn.num_batches_tracked.add_(1)
    if not HAS_BN_WITH_UPDATE:
        # torch < 2.3 on CPU (can_chain): updates the running statistics in
        # training, as F.batch_norm does; it has no reserve space.
        out = _aten.native_batch_norm(x, bn.weight, bn.bias, bn.running_mean,
                                      bn.running_var, bn.training,
                                      bn.momentum, bn.eps)
        return (*out, x.new_empty(0))
    if bn.training:
        return _aten._batch_norm_with_update(x, bn.weight, bn.bias,
                                             bn.running_mean, bn.running_var,
                                             bn.momentum, bn.eps)
    return _aten._batch_norm_no_update(x, bn.weight, bn.bias, bn.running_mean,
                                       bn.running_var, bn.momentum, bn.eps)


def _batch_norm_backward(g_z: torch.Tensor, x: torch.Tensor,
                         bn: nn.BatchNorm2d, training: bool,
                         stats: Sequence[torch.Tensor]):
    """The backward ``F.batch_norm``'s autograd runs for :func:`_batch_norm`:
    ``(grad_input, grad_weight, grad_bias)``."""
    save_mean, save_rstd, reserve = stats
    mask = [True, bn.weight.requires_grad, bn.bias.requires_grad]
    if not HAS_BN_WITH_UPDATE:
        return _aten.native_batch_norm_backward(
            g_z, x, bn.weight, bn.running_mean, bn.running_var, save_mean,
            save_rstd, training, bn.eps, mask)
    return _aten.batch_norm_backward(g_z, x, bn.weight, bn.running_mean,
                                     bn.running_var, save_mean, save_rstd,
                                     training, bn.eps, mask, reserve)


def hierarchical_splits(x: torch.Tensor,
                        width: int,
                        convs: Sequence[nn.Module],
                        bns: Optional[Sequence[nn.Module]] = None,
                        act: Optional[Callable] = None,
                        chain: bool = True,
                        last: Optional[Callable] = None,
                        contiguous: bool = False) -> torch.Tensor:
    """``cat([y_1, ..., y_{s-1}, last(x_s)])`` with ``y_i = act(bn_i(conv_i(
    x_i + y_{i-1})))``: the reference of every Res2Net block.

    Args:
        x (Tensor): The block's ``conv1`` output, ``s * width`` channels.
        width (int): Channels of one split.
        convs (Sequence[nn.Module]): The ``s - 1`` 3x3 convs.
        bns (Sequence[nn.Module], optional): Their norms; None for none
            (deployed convs carry their folded BN).
        act (callable, optional): The activation after each norm; None for
            none (deployed convs carry their ReLU).
        chain (bool): Feed each split the previous output (``+ y_{i-1}``).
            A stage block, which changes resolution or channels, cannot.
        last (callable, optional): Applied to the last split, which has no
            conv (a stage block's pool); None for the identity.
        contiguous (bool): Make each conv input contiguous (mmcv's
            deformable convs need it).
    """
    splits = torch.split(x, width, dim=1)
    outs: List[torch.Tensor] = []
    for i, conv in enumerate(convs):
        sp = splits[i] if i == 0 or not chain else outs[-1] + splits[i]
        if contiguous:
            sp = sp.contiguous()
        sp = conv(sp)
        if bns is not None:
            sp = bns[i](sp)
        outs.append(act(sp) if act is not None else sp)
    outs.append(last(splits[-1]) if last is not None else splits[-1])
    # One concatenation per block, not one per split (O(scales) copies).
    return torch.cat(outs, dim=1)


def grouped_stage_splits(x: torch.Tensor, width: int,
                         convs: Sequence[nn.Conv2d],
                         bns: Sequence[nn.BatchNorm2d],
                         last: Optional[Callable] = None) -> torch.Tensor:
    """:func:`hierarchical_splits` of a stage block (``chain=False``, ReLU)
    with its ``s - 1`` convs run as ONE grouped conv and its BNs as ONE BN.

    BN is per channel, so one BN over the concatenated parameters and
    statistics is the same computation, in training too; the updated running
    statistics are handed back to each split's BN. ``torch.cat`` of the small
    per-split weights is cheap next to the activations and keeps the
    per-split parameters the only ones (the optimizer, the state dict and
    every converter see them unchanged); autograd splits the gradient back to
    each of them. The convs must be alike plain ``nn.Conv2d`` and the BNs
    alike ``nn.BatchNorm2d`` with a momentum (checked by the caller).
    """
    n = len(convs)
    # One split into two views: its backward is one concatenation of the two
    # gradients (two slices would each scatter theirs into a zero-filled copy
    # of the whole input, then add them).
    head, tail = torch.split(x, [n * width, width], dim=1)
    conv0, bn0 = convs[0], bns[0]
    weight = torch.cat([c.weight for c in convs])
    bias = None if conv0.bias is None else torch.cat([c.bias for c in convs])
    out = F.conv2d(head, weight, bias, conv0.stride, conv0.padding,
                   conv0.dilation, conv0.groups * n)
    tracking = bn0.track_running_stats
    mean = torch.cat([bn.running_mean for bn in bns]) if tracking else None
    var = torch.cat([bn.running_var for bn in bns]) if tracking else None
    gamma = torch.cat([bn.weight for bn in bns]) if bn0.affine else None
    beta = torch.cat([bn.bias for bn in bns]) if bn0.affine else None
    out = F.batch_norm(out, mean, var, gamma, beta, bn0.training
                       or not tracking, bn0.momentum, bn0.eps)
    if bn0.training and tracking:
        # F.batch_norm updated the concatenated copies; hand each split's
        # slice back to its own BN, as its own forward would have.
        with torch.no_grad():
            for i, bn in enumerate(bns):
                bn.running_mean.copy_(mean[i * width:(i + 1) * width])
                bn.running_var.copy_(var[i * width:(i + 1) * width])
                bn.num_batches_tracked.add_(1)
    out = F.relu(out, inplace=True)
    return torch.cat([out, last(tail) if last is not None else tail], dim=1)


class ChainedSplits(torch.autograd.Function):
    """``cat([y_0, ..., y_{n-1}, x_n])`` with ``y_i = relu(bn_i(conv_i(
    x_i + y_{i-1})))`` (no ``y_{-1}``), ``x_i`` the splits of ``x``.

    ``convs`` and ``bns`` are plain ``nn.Conv2d`` without bias and affine
    ``nn.BatchNorm2d`` with running statistics (checked by the caller); their
    parameters are passed as tensors so that autograd sees them.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, width: int, convs: Sequence[nn.Conv2d],
                bns: Sequence[nn.BatchNorm2d], *params: torch.Tensor):
        splits = torch.split(x, width, dim=1)
        outs: List[torch.Tensor] = []
        bn_inputs, stats = [], []
        for i, (conv, bn) in enumerate(zip(convs, bns)):
            inp = splits[0] if i == 0 else outs[-1] + splits[i]
            c = F.conv2d(inp, conv.weight, None, conv.stride, conv.padding,
                         conv.dilation, conv.groups)
            z, save_mean, save_rstd, reserve = _batch_norm(c, bn)
            outs.append(z.relu_())
            bn_inputs.append(c)
            stats += [save_mean, save_rstd, reserve]
        outs.append(splits[-1])
        out = torch.cat(outs, dim=1)
        ctx.width, ctx.convs, ctx.bns = width, list(convs), list(bns)
        ctx.training = [bn.training for bn in bns]
        # x and out are kept by the layers around this one anyway (relu1
        # and conv3), so saving them costs nothing.
        ctx.save_for_backward(x, out, *bn_inputs, *stats)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, out, *rest = ctx.saved_tensors
        n, width = len(ctx.convs), ctx.width
        bn_inputs, stats = rest[:n], rest[n:]
        x_splits = torch.split(x, width, dim=1)
        y = torch.split(out, width, dim=1)
        g_out = torch.split(grad_out, width, dim=1)
        x_needs_grad = ctx.needs_input_grad[0]
        g_x: List[Optional[torch.Tensor]] = [None] * n + [g_out[n]]
        g_w: List[Optional[torch.Tensor]] = [None] * n
        g_gamma: List[Optional[torch.Tensor]] = [None] * n
        g_beta: List[Optional[torch.Tensor]] = [None] * n
        g_next = None  # gradient reaching y_i through split i+1's input
        for i in reversed(range(n)):
            conv, bn = ctx.convs[i], ctx.bns[i]
            g_y = g_out[i] if g_next is None else g_out[i] + g_next
            g_z = _aten.threshold_backward(g_y, y[i], 0)
            g_c, g_gamma[i], g_beta[i] = _batch_norm_backward(
                g_z, bn_inputs[i], bn, ctx.training[i],
                stats[3 * i:3 * i + 3])
            # Recomputed: the same addition as in forward, so the same bits.
            inp = x_splits[0] if i == 0 else y[i - 1] + x_splits[i]
            need_input = i > 0 or x_needs_grad
            g_inp, g_w[i], _ = _aten.convolution_backward(
                g_c, inp, conv.weight, None, conv.stride, conv.padding,
                conv.dilation, False, [0, 0], conv.groups,
                [need_input, conv.weight.requires_grad, False])
            g_x[i] = g_inp
            g_next = g_inp
        grad_x = torch.cat(g_x, dim=1) if x_needs_grad else None
        return (grad_x, None, None, None, *g_w, *g_gamma, *g_beta)


def chained_splits(x: torch.Tensor, width: int, convs: Sequence[nn.Conv2d],
                   bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """Apply :class:`ChainedSplits` to a block's ``convs`` and ``bns``."""
    params = [c.weight for c in convs] + [b.weight for b in bns] + \
        [b.bias for b in bns]
    return ChainedSplits.apply(x, width, convs, bns, *params)
