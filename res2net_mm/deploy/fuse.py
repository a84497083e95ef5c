"""Fold batch norms into convs: Res2Net's deploy mode, for any model around it.

mmcv's ``fuse_conv_bn`` folds a BN into the conv right before it among a
module's children; it cannot fold Res2Net's ``convs[i]``/``bns[i]`` pairs,
which sit in two separate ``ModuleList`` s. :func:`fuse_res2net` folds those
(and every other BN of the backbone) through the blocks' own
``switch_to_deploy``, and can then hand the rest of the model (necks, heads)
to mmcv's function.
"""
from typing import List, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _plain_conv(conv: nn.Module) -> bool:
    """A conv whose forward is exactly ``F.conv2d`` with zero padding.

    Subclasses that change the weight (weight standardisation) or the
    sampling (deformable convs) cannot absorb a BN.
    """
    if not isinstance(conv, nn.Conv2d) or conv.padding_mode != 'zeros':
        return False
    if type(conv) is nn.Conv2d:
        return True
    # mmcv's wrapper only adds support for empty inputs.
    return (type(conv).__name__ == 'Conv2d'
            and type(conv).__module__.startswith('mmcv.cnn'))


def _foldable_bn(norm: nn.Module) -> bool:
    return (isinstance(norm, _BatchNorm) and norm.track_running_stats
            and norm.running_mean is not None)


def fold_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """A new conv computing ``bn(conv(x))`` with BN's running statistics.

    The arithmetic is done in float64 and cast back, so the folded weights
    are as close to the exact product as the dtype allows.

    Args:
        conv (nn.Conv2d): A plain 2D conv, with or without bias.
        bn (_BatchNorm): The BN applied to its output (eval statistics).

    Returns:
        nn.Conv2d: A plain conv with bias, on the conv's device and dtype.

    Raises:
        TypeError: If the conv is not a plain conv or the norm is not a BN
            with running statistics.
    """
    if not _plain_conv(conv):
        raise TypeError(f'cannot fold a BN into {type(conv).__name__}: only '
                        f'plain nn.Conv2d (zero padding) can absorb it')
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
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=True,
            device=conv.weight.device,
            dtype=dtype)
        fused.weight.copy_(
            (conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
        fused.bias.copy_(shift.to(dtype))
    # Keep the conv's memory format (channels_last stays channels_last).
    if conv.weight.is_contiguous(memory_format=torch.channels_last) and \
            not conv.weight.is_contiguous():
        fused.to(memory_format=torch.channels_last)
    fused.weight.requires_grad_(conv.weight.requires_grad)
    fused.bias.requires_grad_(conv.weight.requires_grad)
    fused.train(conv.training)
    return fused


def fold_pair(conv: nn.Module,
              norm: nn.Module) -> Tuple[nn.Module, nn.Module]:
    """Fold ``norm`` into ``conv`` where possible.

    Returns:
        tuple: ``(folded conv, nn.Identity())``, or the pair unchanged when it
        cannot be folded (deformable conv, GN, BN without statistics, or a
        norm that is already an identity).
    """
    if isinstance(norm, nn.Identity) or not _plain_conv(conv) \
            or not _foldable_bn(norm):
        return conv, norm
    return fold_bn(conv, norm), nn.Identity()


def group_convs(convs: List[nn.Conv2d]) -> nn.Conv2d:
    """One grouped conv computing ``cat([c(x_i) for c, x_i])``.

    ``x`` is the concatenation of the inputs ``x_i`` along channels; the
    convs must share every setting and all have biases (folded BNs).

    Raises:
        ValueError: If the convs differ in shape or settings.
    """
    c0 = convs[0]
    for c in convs:
        if (c.weight.shape != c0.weight.shape or c.stride != c0.stride
                or c.padding != c0.padding or c.dilation != c0.dilation
                or c.groups != c0.groups or (c.bias is None) !=
                (c0.bias is None) or not _plain_conv(c)):
            raise ValueError('group_convs needs plain convs with identical '
                             'shapes and settings')
    n = len(convs)
    grouped = nn.Conv2d(
        c0.in_channels * n,
        c0.out_channels * n,
        c0.kernel_size,
        stride=c0.stride,
        padding=c0.padding,
        dilation=c0.dilation,
        groups=c0.groups * n,
        bias=c0.bias is not None,
        device=c0.weight.device,
        dtype=c0.weight.dtype)
    with torch.no_grad():
        grouped.weight.copy_(torch.cat([c.weight for c in convs]))
        if c0.bias is not None:
            grouped.bias.copy_(torch.cat([c.bias for c in convs]))
    if c0.weight.is_contiguous(memory_format=torch.channels_last) and \
            not c0.weight.is_contiguous():
        grouped.to(memory_format=torch.channels_last)
    grouped.requires_grad_(c0.weight.requires_grad)
    grouped.train(c0.training)
    return grouped


def fuse_res2net(model: nn.Module, fuse_others: bool = True) -> nn.Module:
    """Switch every Res2Net backbone / block inside ``model`` to deploy mode.

    Works on a bare :class:`~res2net_mm.models.Res2Net`, a
    ``Res2NetClassifier``, an mmpretrain ``ImageClassifier`` or an mmdet
    detector: it walks all submodules. Put the model in eval mode first; the
    folded model computes the eval-mode outputs.

    Args:
        model (nn.Module): Any model.
        fuse_others (bool): Also fold the conv + BN pairs outside Res2Net
            (necks, heads) with mmcv's ``fuse_conv_bn``. Defaults to True.

    Returns:
        nn.Module: ``model``, modified in place.

    Raises:
        ValueError: If ``model`` contains no Res2Net block.
    """
    from ..models.bottle2neck import Bottle2neck
    from ..models.res2net import Res2Net
    found = False
    for m in list(model.modules()):
        if isinstance(m, Res2Net):
            m.switch_to_deploy()
            found = True
    for m in list(model.modules()):
        if isinstance(m, Bottle2neck) and not m.deploy:
            m.switch_to_deploy()
            found = True
        elif isinstance(m, Bottle2neck):
            found = True
    if not found:
        raise ValueError(
            f'{type(model).__name__} contains no res2net_mm Res2Net or '
            f'Bottle2neck; use mmcv.cnn.fuse_conv_bn for other models')
    if fuse_others:
        from mmcv.cnn import fuse_conv_bn
        fuse_conv_bn(model)
    return model
