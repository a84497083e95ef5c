"""The res2net_mm model registry.

mmpretrain and mmdet both register a class named ``Res2Net`` in their own MODELS
registries, which are siblings under mmengine's root registry. A registry of our own
(scope ``res2net_mm``, child of the root) lets ``type='res2net_mm.Res2Net'`` resolve from
an mmpretrain config, an mmdet config or plain Python, without shadowing theirs: mmengine
looks a scoped name up from the root and imports ``locations`` on first use.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='res2net_mm',
    locations=['res2net_mm.models'])
