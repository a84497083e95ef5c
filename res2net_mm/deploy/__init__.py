"""Deploy mode for whole models (BN folding) and ONNX export.

The folding primitives are :mod:`res2net_mm.models.fusion`'s, re-exported
here.
"""
from ..models.fusion import FusedConv2d, fold_bn, fold_pair, group_convs
from .fuse import fuse_res2net

__all__ = ['FusedConv2d', 'fold_bn', 'fold_pair', 'group_convs',
           'fuse_res2net']
