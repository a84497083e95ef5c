"""Read a checkpoint file of any supported container into a flat state dict.

Containers: PyTorch (zip or legacy pickle, always ``weights_only=True``
unless the caller trusts the file), safetensors (also MindSpore's), and
MindSpore ``.ckpt`` (protobuf, decoded without MindSpore). Nothing here renames keys: see
:mod:`.keymaps` and :mod:`.detect`.
"""
import os
import pickle
import re
import zipfile
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from mmengine.runner.checkpoint import (_get_mmengine_home,
                                        get_deprecated_model_names,
                                        get_external_models)

from .container import sniff_container
from .download import fetch_url, resolve_uri
from .errors import CheckpointError, UnsafeCheckpointError
from .mindspore_ckpt import CkptFormatError, parse_ckpt

# Where training checkpoints keep the model weights, in order of preference:
# mmengine / mmcv / timm train scripts ('state_dict'), others ('model', ...).
STATE_KEYS = ('state_dict', 'model', 'module', 'net')
TRUST_HINT = ('Unpickling such a file can run arbitrary code. If you trust it '
              '(e.g. your own training checkpoint), opt in with trust=True '
              '(Python), --trust (tools/model_converters) or trust=True in '
              'init_cfg')


def weights_key(checkpoint: Mapping) -> Optional[str]:
    """The entry of a checkpoint dict that holds the weights.

    Args:
        checkpoint (Mapping): A loaded checkpoint.

    Returns:
        str, optional: The first of :data:`STATE_KEYS` that holds a dict, or
        None when the checkpoint's own values are tensors (a plain state
        dict) or no such entry exists.
    """
    if any(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return None
    return next((k for k in STATE_KEYS
                 if isinstance(checkpoint.get(k), dict)), None)


def resolve_path(path) -> str:
    """Turn ``res2net_mm://``, ``open-mmlab://`` and URLs into a local file.

    URLs (``http(s)://``, ``file://``) are fetched once into torch hub's
    checkpoint folder (``$TORCH_HOME``) by
    :func:`~res2net_mm.converters.download.fetch_url`, via a temporary file;
    a name ending in ``-<hex digits>.<ext>`` (OpenMMLab and torch hub
    convention, see ``publish_model.py``) is checked against the sha256 of
    the download. The file is then read like any local file (safely).

    Args:
        path (str): A local path, URL, ``open-mmlab://`` name or
            ``res2net_mm://`` name (a published file, verified: see
            :mod:`.download`).

    Returns:
        str: A local path.

    Raises:
        CheckpointError: For an unknown name or a failed download.
    """
    path = os.fspath(path)
    if path.startswith('res2net_mm://'):
        return resolve_uri(path)
    for scheme in ('open-mmlab://', 'openmmlab://'):
        if path.startswith(scheme):
            name = path[len(scheme):]
            name = get_deprecated_model_names().get(name, name)
            urls = get_external_models()
            if name not in urls:
                raise CheckpointError(path, 'unknown OpenMMLab model name',
                                      'See mmengine/hub/openmmlab.json')
            url = urls[name]
            if not url.startswith(('http://', 'https://')):
                return os.path.join(_get_mmengine_home(), url)
            path = url
    if path.startswith(('http://', 'https://', 'file://')):
        return fetch_url(path)
    return path


def load_torch_file(path, trust: bool, map_location) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        # torch < 2.4 wraps an early end of a legacy pickle in its
        # "Weights only load failed" message too.
        ends_early = 'unexpected EOF' in message
        if ends_early or ('Weights only load failed' not in message
                          and 'Unsupported global' not in message
                          and 'Unsupported operand' not in message):
            raise CheckpointError(
                path, f'cannot be unpickled ({message.splitlines()[0]})',
                'The file may be truncated or corrupt') from None
        if not trust:
            found = re.findall(r'Unsupported global: GLOBAL ([\w.]+)', message)
            what = f' (first offending object: {found[0]})' if found else ''
            problem = ('the pickle holds objects other than tensors and '
                       f'plain containers{what}')
            opcode = re.findall(r'Unsupported operand (\d+)', message)
            if opcode:
                problem = (f'it was not written by torch.save (pickle opcode '
                           f'{opcode[0]} is one torch.save never writes): a '
                           f'plain, truncated or crafted pickle')
            raise UnsafeCheckpointError(path, f'refused to load: {problem}',
                                        TRUST_HINT) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile,
            ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            path, f'cannot be read as a PyTorch checkpoint ({first})',
            'The file is probably truncated or corrupt') from None
    # The caller trusts the file: a full unpickle (mmengine message hubs,
    # numpy scalars, argparse namespaces ...).
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001  any failure of an arbitrary pickle
        raise CheckpointError(path, f'trusted load failed: {e!r}') from None


def _load_safetensors(path) -> Tuple[Dict[str, torch.Tensor], Dict]:
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - listed in the requirements
        raise CheckpointError(path, 'is a safetensors file but the '
                              'safetensors package is not installed',
                              'pip install safetensors') from None
    try:
        with safe_open(path, framework='pt') as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001  safetensors raises its own types
        raise CheckpointError(
            path, f'cannot be read as safetensors ({e})',
            'The file is probably truncated or corrupt') from None
    return state, meta


def _load_mindspore_ckpt(path) -> Tuple[Dict[str, Any], Dict]:
    with open(path, 'rb') as f:
        data = f.read()
    try:
        arrays = parse_ckpt(data)
    except CkptFormatError as e:
        raise CheckpointError(
            path, f'cannot be read as a MindSpore .ckpt ({e})',
            'The file is probably truncated, corrupt or encrypted') from None
    state, strings = {}, {}
    for k, v in arrays.items():
        if isinstance(v, str):
            strings[k] = v
        else:
            state[k] = torch.from_numpy(np.ascontiguousarray(v))
    return state, strings


def read_checkpoint(path, trust: bool = False,
                    map_location='cpu') -> Tuple[Dict[str, Any], Dict]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict.

    Training checkpoints are unwrapped (``state_dict`` / ``model`` entries)
    and a DataParallel ``module.`` prefix is removed. Entries that are not tensors
    (optimizer state, message hubs, ...) are left out and listed in the info.

    Args:
        path (str): The file.
        trust (bool): Allow a full (code-running) unpickle of PyTorch files
            that hold more than tensors. Defaults to False.
        map_location: Passed to ``torch.load``. Defaults to ``'cpu'``.

    Returns:
        tuple[dict, dict]: The tensors, and an info dict with ``container``,
        ``state_key`` (where the weights were found), ``meta`` and
        ``skipped`` (``{entry: reason}``).

    Raises:
        CheckpointError: With the file name and the problem.
    """
    path = os.fspath(path)
    container = sniff_container(path)
    info: Dict[str, Any] = dict(
        path=path, container=container, state_key=None, meta={}, skipped={})
    if container == 'safetensors':
        obj, info['meta'] = _load_safetensors(path)
    elif container == 'mindspore_ckpt':
        obj, strings = _load_mindspore_ckpt(path)
        for k in strings:
            info['skipped'][k] = 'a string entry, not a tensor'
    else:
        obj = load_torch_file(path, trust, map_location)

    if not isinstance(obj, dict):
        raise CheckpointError(
            path, f'holds a {type(obj).__name__}, not a dict of weights',
            'Save the state_dict(), not the model object')
    key = weights_key(obj)
    if key is not None:
        info['state_key'] = key
        for other in obj:
            if other != key:
                info['skipped'][other] = (
                    'checkpoint metadata' if other == 'meta' else
                    'training state, not model weights')
        if isinstance(obj.get('meta'), dict):
            info['meta'] = obj['meta']
        obj = obj[key]
    state = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            state[k] = v
        else:
            info['skipped'][k] = f'not a tensor ({type(v).__name__})'
    if not state:
        raise CheckpointError(path, 'holds no tensors',
                              'It is not a weight file')
    if all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
        info['stripped_prefix'] = 'module.'
    return state, info
