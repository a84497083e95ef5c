"""Loading mmengine training checkpoints under torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7
calls ``torch.load`` without the argument, and the checkpoints its Runner writes
hold more than tensors: the message hub (``HistoryBuffer`` objects holding numpy
arrays), numpy scalars and the parameter schedulers' ``Counter`` milestones. Resume
then fails with ``UnpicklingError: Unsupported global``.

Instead of switching loads to ``weights_only=False`` (which would execute arbitrary
pickles from any file given to the tools), this module adds exactly the classes and
functions such checkpoints need to torch's allow-list. Every load stays
``weights_only=True``; a file that needs any other global is still refused.

One object cannot be allow-listed safely as mmengine pickles it: a
``HistoryBuffer`` carries its class's statistics functions, which pickle as
``builtins.getattr(HistoryBuffer, 'min')``, and allowing ``getattr`` would let a
file reach any attribute of any allowed object. So checkpoints written by
processes that called :func:`allow_training_checkpoints` (the project's tools)
pickle a ``HistoryBuffer`` as its data only (``copyreg``), rebuilt on load by
:func:`rebuild_history_buffer`; the statistics functions are class-level and come
back from the code. Training checkpoints written by plain mmengine 0.10.7 under
torch >= 2.6 still need ``weights_only=False`` and are refused with torch's
message.
"""
import collections
import copyreg
from typing import List

import numpy as np
import torch


def rebuild_history_buffer(log_history, count_history, max_length):
    """Rebuild a ``HistoryBuffer`` from its data (the reverse of the reducer).

    Args:
        log_history (np.ndarray): Logged values.
        count_history (np.ndarray): Counts of the logged values.
        max_length (int): Capacity of the buffer.

    Returns:
        mmengine.logging.HistoryBuffer: The buffer.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    return HistoryBuffer(log_history, count_history, max_length)


def _reduce_history_buffer(buffer):
    return rebuild_history_buffer, (buffer._log_history,
                                    buffer._count_history, buffer.max_length)


def training_checkpoint_globals() -> List:
    """Globals that mmengine training checkpoints of this project contain.

    Returns:
        list: Classes and functions to pass to
        ``torch.serialization.add_safe_globals``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    # numpy arrays and scalars are pickled through these reconstructors. Their
    # module is numpy.core.multiarray in numpy 1 and numpy._core.multiarray in
    # numpy 2 (numpy 1.26 has a numpy._core stub without it).
    if int(np.__version__.split('.')[0]) >= 2:
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64, np.str_)]
    return [
        HistoryBuffer,
        rebuild_history_buffer,
        collections.Counter,
        collections.defaultdict,
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        *dtype_classes,
    ]


_ALLOWED = False


def allow_training_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read mmengine training checkpoints.

    Idempotent. Needed to resume (``--resume``) and to load checkpoints whose
    ``meta``/``message_hub`` entries hold numpy or mmengine objects, with
    mmengine 0.10.7 on torch >= 2.6. On older torch it does nothing (loads there
    are unrestricted anyway).
    """
    global _ALLOWED
    if _ALLOWED:
        return
    from mmengine.logging.history_buffer import HistoryBuffer
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(training_checkpoint_globals())
    _ALLOWED = True
