"""Deploy-mode helpers: BN folding and fused inference kernels."""
from .fuse import fold_bn, fold_pair, fuse_res2net, group_convs

__all__ = ['fold_bn', 'fold_pair', 'group_convs', 'fuse_res2net']
