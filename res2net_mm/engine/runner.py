"""Building an mmengine Runner for any OpenMMLab 2.x config (mmpretrain, mmdet)."""
import importlib

import torch
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .checkpoint import PortableCheckpointHook, allow_training_checkpoints
from .dist import setup_cpu_distributed
from .load_from import install as install_any_format_loading

# Codebases whose ``utils.register_all_modules`` the tools know how to call.
KNOWN_SCOPES = ('mmpretrain', 'mmdet')


def register_scope_modules(cfg) -> str:
    """Register the modules of the codebase named by ``cfg.default_scope``.

    Args:
        cfg (mmengine.Config): A config with ``default_scope`` (``'mmpretrain'``
            or ``'mmdet'``).

    Returns:
        str: The scope.
    """
    scope = cfg.get('default_scope')
    if scope is None:
        raise ValueError(
            f'the config {cfg.filename} has no `default_scope`: set '
            f"default_scope='mmpretrain' (classification) or "
            f"default_scope='mmdet' (detection), usually by inheriting the "
            'default_runtime base config')
    try:
        utils = importlib.import_module(f'{scope}.utils')
        register_all_modules = utils.register_all_modules
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f'default_scope={scope!r} of {cfg.filename} needs the package '
            f'{scope} with {scope}.utils.register_all_modules; known scopes: '
            f'{", ".join(KNOWN_SCOPES)}. Is it installed? ({e})') from e
    # The Runner sets the default scope itself (from cfg.default_scope).
    register_all_modules(init_default_scope=False)
    # The project's own registries (backbone, training loop) exist already:
    # this module is part of res2net_mm, whose import registers them.
    return scope


def apply_dataloader_defaults(cfg) -> None:
    """Dataloader defaults of the codebase's own tools.

    mmpretrain's ``tools/train.py`` and ``tools/test.py`` batch with
    ``default_collate`` (its test-time augmentation relies on it), pin memory
    and keep workers alive between epochs; the config's own keys win.
    """
    if cfg.get('default_scope') != 'mmpretrain':
        return
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if loader is None:
            continue
        loader.setdefault('collate_fn', dict(type='default_collate'))
        loader.setdefault('pin_memory', torch.cuda.is_available())
        # persistent workers need workers (DataLoader refuses otherwise)
        loader.setdefault('persistent_workers',
                          loader.get('num_workers', 0) > 0)


def build_runner(cfg, launcher: str = 'none'):
    """Register modules, prepare CPU distributed training and build the Runner.

    Args:
        cfg (mmengine.Config): The full config (``launcher`` is set here).
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        mmengine.runner.Runner: Built with ``Runner.from_cfg`` or, if the config
        names a ``runner_type``, from the RUNNERS registry, with a
        :class:`~res2net_mm.engine.PortableCheckpointHook`, loading
        ``load_from`` in any supported format
        (:func:`~res2net_mm.engine.load_from.load_checkpoint_any_format`).
    """
    allow_training_checkpoints()
    register_scope_modules(cfg)
    apply_dataloader_defaults(cfg)
    cfg.launcher = launcher
    setup_cpu_distributed(cfg, launcher)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    # Checkpoints that torch.load(weights_only=True) reads anywhere (the
    # toolboxes' Inferencers, init_detector), restored exactly on resume.
    if not any(isinstance(h, PortableCheckpointHook) for h in runner.hooks):
        runner.register_hook(PortableCheckpointHook())
    # load_from / tools/test.py's checkpoint in any supported format.
    install_any_format_loading(runner)
    return runner
