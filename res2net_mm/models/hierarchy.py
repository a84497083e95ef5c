"""Memory-lean training of a Res2Net block's chained split convs.

Run op by op, autograd keeps, for every split ``i`` of a (non-stage) block, the
conv input ``y[i-1] + x[i]`` and the ReLU output ``y[i]``, although every
``y[i]`` is also kept inside the block's concatenation (conv3 saves it) and the
conv input is one addition of two tensors that are kept anyway.
:class:`ChainedSplits` runs the same kernels forward, and in backward the
same backward kernels autograd would run, but keeps only the BN inputs: the
ReLU masks are read from the concatenation and the conv inputs recomputed.
Same numbers; ``2 * scales - 3`` fewer activation tensors per block.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

_aten = torch.ops.aten


def _batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, ...]:
    """``bn(x)`` as ``nn.BatchNorm2d.forward`` computes it, with the
    statistics its backward needs (the kernels ``F.batch_norm`` runs)."""
    if bn.training:
        bn.num_batches_tracked.add_(1)
        return _aten._batch_norm_with_update(x, bn.weight, bn.bias,
                                             bn.running_mean, bn.running_var,
                                             bn.momentum, bn.eps)
    return _aten._batch_norm_no_update(x, bn.weight, bn.bias, bn.running_mean,
                                       bn.running_var, bn.momentum, bn.eps)


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
            save_mean, save_rstd, reserve = stats[3 * i:3 * i + 3]
            g_c, g_gamma[i], g_beta[i] = _aten.batch_norm_backward(
                g_z, bn_inputs[i], bn.weight, bn.running_mean, bn.running_var,
                save_mean, save_rstd, ctx.training[i], bn.eps,
                [True, bn.weight.requires_grad, bn.bias.requires_grad],
                reserve)
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
