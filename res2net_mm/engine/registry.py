"""Registries for the training-loop pieces of res2net_mm.

Children of mmengine's root ``LOOPS`` and ``HOOKS`` with scope ``res2net_mm``, so
``type='res2net_mm.ResumableEpochBasedTrainLoop'`` builds from mmpretrain and mmdet
configs alike (same mechanism as :mod:`res2net_mm.registry` for models).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import Registry

LOOPS = Registry(
    'loop',
    parent=MMENGINE_LOOPS,
    scope='res2net_mm',
    locations=['res2net_mm.engine'])
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='res2net_mm',
    locations=['res2net_mm.engine'])
