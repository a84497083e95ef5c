"""Fold batch norms into convs: Res2Net's deploy mode, for any model around it.

mmcv's ``fuse_conv_bn`` folds a BN into the conv right before it among a
module's children; it cannot fold Res2Net's ``convs[i]``/``bns[i]`` pairs,
which sit in two separate ``ModuleList`` s. :func:`fuse_res2net` folds those
(and every other BN of the backbone) through the backbones' and blocks' own
``switch_to_deploy``, and can then hand the rest of the model (necks, heads)
to mmcv's function. The folding itself lives in
:mod:`res2net_mm.models.fusion`.
"""
from mmcv.cnn import fuse_conv_bn
from torch import nn


def _deployable(module: nn.Module) -> bool:
    """A res2net_mm backbone or block (found by duck typing: every one of
    them has ``switch_to_deploy``)."""
    return (type(module).__module__.startswith('res2net_mm.')
            and callable(getattr(module, 'switch_to_deploy', None)))


def fuse_res2net(model: nn.Module, fuse_others: bool = True) -> nn.Module:
    """Switch every res2net_mm backbone / block inside ``model`` to deploy
    mode.

    Works on a bare backbone (Res2Net, Res2Net-DLA, bLRes2Net), a
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
        ValueError: If ``model`` contains no res2net_mm backbone or block.
    """
    # Outer modules first: a backbone folds its stem and its blocks; blocks
    # used on their own are reached after it (deploying twice does nothing).
    found = [m for m in model.modules() if _deployable(m)]
    if not found:
        raise ValueError(
            f'{type(model).__name__} contains no res2net_mm Res2Net or '
            f'Bottle2neck; use mmcv.cnn.fuse_conv_bn for other models')
    for m in found:
        m.switch_to_deploy()
    if fuse_others:
        fuse_conv_bn(model)
    return model
