"""Write native weights in another format, atomically.

Every writer saves to a temporary file in the destination folder and renames it
over the destination only when the write has finished
(:func:`res2net_mm.utils.io.atomic_write`), so a failure (full disk, bad input,
Ctrl-C) never leaves a partial file behind.
"""
import json
from typing import Dict, Mapping, Optional, Tuple

import torch

from ..utils.io import atomic_write
from ..version import __version__
from .keymaps import TO_FORMAT, split_classifier
from .mindspore_ckpt import serialize_ckpt
from .validate import check_finite

OUT_FORMATS = ('native', 'timm', 'mmpretrain', 'mmdet', 'safetensors',
               'mindcv')


def convert_state(native: Mapping, fmt: str) -> Dict:
    """Rename native weights to ``fmt`` (pure; see :mod:`.keymaps`).

    Args:
        native (Mapping): Native state dict (``fc.*`` allowed).
        fmt (str): One of :data:`OUT_FORMATS`.

    Returns:
        dict: The renamed state dict.
    """
    if fmt not in OUT_FORMATS:
        raise ValueError(f'unknown output format {fmt!r}; valid: '
                         f'{", ".join(OUT_FORMATS)}')
    if fmt == 'safetensors':
        return dict(native)
    return TO_FORMAT[fmt](native)


def plain_values(value):
    """Keep metadata loadable with ``weights_only=True`` (plain types only)."""
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def save_checkpoint_as(native: Mapping,
                       path,
                       fmt: str,
                       meta: Optional[dict] = None,
                       drop_classifier: bool = False,
                       allow_nonfinite: bool = False) -> Tuple[str, Dict]:
    """Save native weights as a ``fmt`` file, atomically.

    File layouts: ``native`` and ``mmpretrain`` and ``mmdet`` are mmengine
    checkpoints ``{'meta': ..., 'state_dict': ...}`` (mmpretrain with
    ``backbone.``/``head.fc.`` prefixes, mmdet in its pretrain naming with
    ``stem.N``), ``timm`` a plain state dict (``torch.save``), ``safetensors``
    native names in a safetensors file, ``mindcv`` a MindSpore ``.ckpt``.

    Args:
        native (Mapping): Native weights.
        path (str): Destination file.
        fmt (str): One of :data:`OUT_FORMATS`.
        meta (dict, optional): Extra metadata to store (plain values).
        drop_classifier (bool): Leave ``fc.*`` out. Defaults to False.
        allow_nonfinite (bool): Write NaN / infinite values instead of
            raising :class:`NonFiniteWeightsError`. Defaults to False.

    Returns:
        tuple[str, dict]: The path and the state dict as written.
    """
    check_finite(native, str(path), allow_nonfinite)
    native = {k: v.detach().cpu().contiguous() if isinstance(v, torch.Tensor)
              else v for k, v in native.items()}
    if drop_classifier:
        native, _ = split_classifier(native)
    if fmt == 'mmdet':
        native, _ = split_classifier(native)  # mmdet has no classifier
    state = convert_state(native, fmt)
    info = dict(res2net_mm=dict(version=__version__, format=fmt),
                **plain_values(meta or {}))

    if fmt == 'safetensors':
        from safetensors.torch import save_file
        header = {'format': 'res2net_mm', 'res2net_mm': json.dumps(info)}
        # safetensors refuses tensors that share memory: give each its own.
        tensors = {k: v.clone() for k, v in state.items()}
        return atomic_write(path, lambda p: save_file(tensors, p,
                                                      metadata=header)), state
    if fmt == 'mindcv':
        data = serialize_ckpt({k: v.numpy() for k, v in state.items()})

        def write(p):
            with open(p, 'wb') as f:
                f.write(data)
        return atomic_write(path, write), state
    if fmt == 'timm':
        obj = state
    else:
        if fmt != 'native':
            info.pop('res2net_mm')  # only our own files claim native names
            info['converted_by'] = f'res2net_mm {__version__}'
        obj = dict(meta=info, state_dict=state)
    return atomic_write(path, lambda p: torch.save(obj, p)), state
