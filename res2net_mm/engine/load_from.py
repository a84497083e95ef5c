"""``load_from`` (and ``tools/test.py``'s checkpoint) in any supported format.

:func:`~res2net_mm.engine.build_runner` makes the Runner load checkpoints
through :func:`load_checkpoint_any_format`: the one place where
``load_from=`` of ``tools/train.py``, the checkpoint of ``tools/test.py`` and
of ``dist_test.sh`` (every rank) are read. Files in the model's own naming
load exactly as mmengine loads them (same reader, same ``strict``); other
Res2Net files are converted by
:func:`~res2net_mm.converters.whole_model.to_model_state` (see there for what
goes where and what stays at init). Resuming (``--resume``) is unaffected.
"""
import logging
import os
import re
from typing import Dict, Mapping

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)

from ..converters.container import sniff_container
from ..converters.download import resolve_uri
from ..converters.reading import read_checkpoint, weights_key
from ..converters.whole_model import (describe_model_load, find_res2net_model,
                                      in_model_naming, linear_head_prefix,
                                      to_model_state)


def _local_file(filename) -> str:
    """The local file behind ``filename`` (``res2net_mm://`` fetched), or ''
    for what mmengine's other loaders fetch (URLs, ``open-mmlab://``)."""
    filename = os.fspath(filename)
    if filename.startswith('res2net_mm://'):
        return resolve_uri(filename)
    return filename if os.path.isfile(filename) else ''


def _flat_state(checkpoint: Mapping, revise_keys) -> Dict:
    """The tensors of a checkpoint as mmengine's ``_load_checkpoint_to_model``
    finds them (``state_dict`` entry or the dict itself, keys revised)."""
    state = checkpoint.get('state_dict', checkpoint)
    key = weights_key(state)  # e.g. timm / torchvision training files
    if key is not None:
        state = state[key]
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        for pattern, repl in revise_keys:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def load_checkpoint_any_format(runner,
                               filename,
                               map_location='cpu',
                               strict: bool = False,
                               revise_keys=[(r'^module.', '')]):
    """``Runner.load_checkpoint`` that also takes foreign Res2Net files.

    Args:
        runner (mmengine.runner.Runner): The runner whose model is loaded.
        filename (str): Local path, URL, ``open-mmlab://`` or
            ``res2net_mm://`` name; PyTorch, safetensors or MindSpore
            ``.ckpt``.
        map_location: As mmengine's. Defaults to ``'cpu'``.
        strict (bool): As mmengine's for files in the model's naming; for a
            converted file, True refuses one that leaves model weights at
            init. Defaults to False (mmengine's default for ``load_from``).
        revise_keys (list): As mmengine's.

    Returns:
        dict: The checkpoint.

    Raises:
        CheckpointError: For a file that is not Res2Net weights or does not
            fit the model's backbone (one line; nothing is loaded).
    """
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    local = _local_file(filename)
    container = sniff_container(local) if local else 'torch'
    if container == 'torch':
        # mmengine's own reader (weights_only, its schemes): unchanged.
        checkpoint = _load_checkpoint(local or filename,
                                      map_location=map_location)
    else:
        state, info = read_checkpoint(local)
        checkpoint = dict(state_dict=state, meta=dict(info['meta']))
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)

    target = find_res2net_model(model)
    state = _flat_state(checkpoint, revise_keys)
    if target is None or in_model_naming(state, target.state_dict()):
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=revise_keys)
    else:
        model_state = target.state_dict()
        converted, report = to_model_state(
            state, model_state, linear_head_prefix(target), str(filename),
            num_stages=target.backbone.num_stages)
        line = describe_model_load(report, str(filename), container)
        if strict and report['kept_init']:
            raise RuntimeError(f'{line}. strict=True needs every model '
                               'weight in the file')
        with torch.no_grad():
            result = target.load_state_dict(converted, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
        print_log(line, logger='current',
                  level=logging.WARNING if report['kept_init'] else
                  logging.INFO)
    runner._has_loaded = True
    runner.logger.info(f'Load checkpoint from {filename}')
    return checkpoint


def install(runner) -> None:
    """Make ``runner.load_checkpoint`` (what ``load_from`` and
    ``tools/test.py`` use) :func:`load_checkpoint_any_format`."""

    def load_checkpoint(filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module.', '')]):
        return load_checkpoint_any_format(runner, filename, map_location,
                                          strict, revise_keys)

    load_checkpoint.__doc__ = load_checkpoint_any_format.__doc__
    runner.load_checkpoint = load_checkpoint
