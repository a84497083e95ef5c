"""res2net_mm's classifiers in mmpretrain's model hub.

mmpretrain's ``get_model``, ``list_models`` and ``inference_model`` find a model
by the name its ``model-index.yml`` gives it. ``import res2net_mm`` registers every
image classification model of this package's ``model-index.yml``
(``configs/res2net/metafile.yml``) with mmpretrain's ``ModelHub`` when mmpretrain
is installed; without mmpretrain nothing happens (mmpretrain is optional).

Metafiles of other tasks (``configs/detection/metafile.yml``) stay out of the hub:
mmpretrain would list them and fail to build them.

Names: ours are all lowercase and none is one of mmpretrain's own (its Res2Net
weights are ``res2net50-w14-s8_3rdparty_8xb32_in1k`` and so on; ours carry no
``_3rdparty``), so neither side shadows the other. Should a later mmpretrain
add one of our names, mmpretrain's ModelHub raises its ``The model name ... is
conflict`` error naming both metafiles instead of silently replacing a model.

Registration is lazy: ``import res2net_mm`` imports nothing of mmpretrain (the
backbone must run where only torch, mmengine and mmcv-lite are installed). If
mmpretrain's hub module is already imported, the models are registered at once;
otherwise a one-shot import hook registers them right after
``mmpretrain.apis.model`` (where ``ModelHub`` lives) has been imported, whichever
comes first.

Config paths in the metafiles are relative to the directory that holds
``model-index.yml``: the root of a source checkout, or ``res2net_mm/.mim`` of an
installed wheel (:func:`find_model_index`).
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os.path as osp
import sys
import warnings
from typing import List, Optional

import yaml

HAS_MMPRETRAIN = importlib.util.find_spec('mmpretrain') is not None
# The module that defines mmpretrain's ModelHub.
HUB_MODULE = 'mmpretrain.apis.model'

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
MODEL_INDEX = 'model-index.yml'
CLASSIFICATION = 'Image Classification'

_registered: List[str] = []


def find_model_index(package_dir: str = PACKAGE_DIR) -> str:
    """The directory with ``model-index.yml`` and the configs it names.

    A source checkout (``model-index.yml`` and ``configs/`` next to the
    package) wins over ``<package>/.mim``, which ``setup.py`` may have filled
    with copies that are older than the checkout's files; an installed wheel
    has only ``.mim``.

    Args:
        package_dir (str): The ``res2net_mm`` package directory.

    Returns:
        str: The directory.

    Raises:
        FileNotFoundError: Neither place has ``model-index.yml``.
    """
    checkout = osp.dirname(package_dir)
    mim = osp.join(package_dir, '.mim')
    if osp.isfile(osp.join(checkout, MODEL_INDEX)) and osp.isdir(
            osp.join(checkout, 'configs')):
        return checkout
    if osp.isfile(osp.join(mim, MODEL_INDEX)):
        return mim
    raise FileNotFoundError(
        f'no {MODEL_INDEX} in {checkout} (a source checkout) or {mim} (an '
        'installed package): reinstall res2net_mm (`pip install res2net_mm` '
        'or `pip install -e .` in a clone); its wheel ships the model index '
        'under res2net_mm/.mim')


def _load_yaml(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def classification_metafiles(root: str) -> List[str]:
    """The metafiles of ``root/model-index.yml`` that hold image classifiers.

    Args:
        root (str): Directory of ``model-index.yml`` (:func:`find_model_index`).

    Returns:
        list[str]: Absolute metafile paths whose every model reports only
        image classification results.

    Raises:
        ValueError: A metafile mixes classification with other tasks (it
            could only be registered whole).
    """
    paths = []
    for rel in _load_yaml(osp.join(root, MODEL_INDEX)).get('Import', []):
        path = osp.join(root, rel)
        tasks = {
            result['Task']
            for model in _load_yaml(path).get('Models', [])
            for result in model.get('Results') or []
        }
        if CLASSIFICATION not in tasks:
            continue
        if tasks != {CLASSIFICATION}:
            others = sorted(tasks - {CLASSIFICATION})
            raise ValueError(
                f'{path} mixes {CLASSIFICATION!r} with {others}: '
                "mmpretrain's model hub takes whole metafiles; keep the "
                'classification models in a metafile of their own')
        paths.append(path)
    return paths


def register_mmpretrain_models(root: Optional[str] = None) -> List[str]:
    """Register the classifiers of the model index with mmpretrain's hub.

    Called by ``import res2net_mm`` when mmpretrain is installed; idempotent.

    Args:
        root (str, optional): Directory of ``model-index.yml``. Defaults to
            :func:`find_model_index`.

    Returns:
        list[str]: The metafiles registered (by this or an earlier call).
    """
    if not HAS_MMPRETRAIN:
        raise ImportError(
            "registering res2net_mm's models with mmpretrain's model hub "
            'needs mmpretrain: pip install "mmpretrain>=1.0"')
    from mmpretrain.apis.model import ModelHub  # optional dependency
    root = find_model_index() if root is None else root
    for path in classification_metafiles(root):
        if path in _registered:
            continue
        ModelHub.register_model_index(path, config_prefix=root)
        _registered.append(path)
    return list(_registered)


def _register_on_import() -> None:
    # The backbone works without the hub entries: a missing model index or a
    # name taken in the hub must not make `import res2net_mm` fail.
    try:
        register_mmpretrain_models()
    except (FileNotFoundError, ValueError) as e:
        warnings.warn(f"res2net_mm's models are not in mmpretrain's model "
                      f'hub: {e}')


class _RegisterAfterHubImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when ``mmpretrain.apis.model`` is imported, it
    lets the normal finders locate it and registers our models right after
    the module has run, then removes itself."""

    def find_spec(self, name, path, target=None):
        if name != HUB_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            _register_on_import()

        spec.loader.exec_module = exec_module
        return spec


if HAS_MMPRETRAIN:
    if HUB_MODULE in sys.modules:
        _register_on_import()
    elif not any(isinstance(f, _RegisterAfterHubImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterHubImport())
