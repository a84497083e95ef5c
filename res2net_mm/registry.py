"""The res2net_mm registries.

``MODELS``: mmpretrain and mmdet both register a class named ``Res2Net`` in
their own MODELS registries, which are siblings under mmengine's root
registry. A registry of our own (scope ``res2net_mm``, child of the root) lets
``type='res2net_mm.Res2Net'`` resolve from an mmpretrain config, an mmdet
config or plain Python, without shadowing theirs: mmengine looks a scoped name
up from the root and imports ``locations`` on first use.

``WEIGHT_LOADERS``: the functions the backbones call to load weights, which
:mod:`res2net_mm.converters` registers (``import res2net_mm`` imports it, so
they are there whenever a backbone exists). Dependencies flow one way,
converters -> models: the backbones look the functions up by name here and
never import the converters.

- ``'Pretrained'``: ``loader(backbone, init_cfg)`` for
  ``init_cfg=dict(type='Pretrained', ...)`` (any supported format, strict).
- ``'deep_stem_keys'``: ``rename(state_dict, prefix)``, called by
  :class:`~res2net_mm.models.Res2Net` when a state dict is loaded into it:
  renames mmdet's and mmpretrain's deep-stem keys (``stem.N``) in place.
"""
from typing import Callable

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='res2net_mm',
    locations=['res2net_mm.models'])

WEIGHT_LOADERS = Registry('weight loader', scope='res2net_mm')


def get_weight_loader(name: str) -> Callable:
    """The function registered in :data:`WEIGHT_LOADERS` under ``name``.

    Args:
        name (str): ``'Pretrained'`` or ``'deep_stem_keys'``.

    Returns:
        Callable: The registered function.

    Raises:
        KeyError: If nothing is registered under ``name``, naming what is.
    """
    loader = WEIGHT_LOADERS.get(name)
    if loader is None:
        raise KeyError(
            f'no weight loader {name!r} is registered (registered: '
            f'{sorted(WEIGHT_LOADERS.module_dict)}); res2net_mm.converters '
            'registers them: import res2net_mm')
    return loader
