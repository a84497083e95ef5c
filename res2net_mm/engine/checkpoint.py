"""Training checkpoints that load with ``torch.load(weights_only=True)``.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7
calls ``torch.load`` without the argument, and the checkpoints its Runner writes
hold more than tensors: the message hub (``HistoryBuffer`` objects holding numpy
arrays), numpy scalars and the random generator states (numpy arrays). Loading
them then fails with ``UnpicklingError: Unsupported global``, in our tools (resume)
and in every other tool given our checkpoint (mmpretrain's and mmdet's
Inferencers, ``init_detector``, mmengine's ``load_checkpoint``).

The project's tools therefore write *portable* checkpoints
(:class:`PortableCheckpointHook`, registered by
:func:`res2net_mm.engine.build_runner`): just before the file is written, every
``HistoryBuffer``, numpy array and numpy scalar in it becomes a plain dict of
tensors, lists and numbers tagged with :data:`PORTABLE_TAG`. Such a file holds
only globals that torch's default ``weights_only`` unpickler allows, so it loads
anywhere, also in a process that never imports res2net_mm. On resume the same hook
turns the tagged dicts back into the original objects (same types, same values),
so a resumed run continues exactly.

Checkpoints written by earlier versions of the tools pickled a ``HistoryBuffer``
through :func:`rebuild_history_buffer` and hold numpy objects. They still resume
with the tools: :func:`allow_training_checkpoints` adds exactly the classes and
functions they need to torch's allow-list, never ``weights_only=False``, so a file
that needs any other global (a pickle that would run code) stays refused.
``builtins.getattr``, which plain mmengine pickles a ``HistoryBuffer``'s
statistics methods with, is not allowed either: it would let a file reach any
attribute of any allowed object.

The toolboxes' own tools (mmdet's, mmpretrain's, mmseg's ``tools/train.py``)
build a plain Runner without that hook. For them ``import res2net_mm``, which
their config triggers through the registry before any checkpoint is written or
read, calls :func:`allow_mmengine_checkpoints`: in that process a
``HistoryBuffer`` pickles as its class called with plain lists (no numpy, no
``getattr``), and the class, whose constructor only stores numbers, joins
torch's allow-list together with numpy scalars of plain dtypes. So a
toolbox's ``tools/test.py`` loads what its ``tools/train.py`` wrote, with
``weights_only=True``.
"""
import collections
import copy
import copyreg
from typing import Any, Callable, List

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from .registry import HOOKS

# The module of numpy's pickle reconstructors: numpy.core.multiarray in
# numpy 1, numpy._core.multiarray in numpy 2 (numpy 1.26 has a numpy._core
# stub without it).
if int(np.__version__.split('.')[0]) >= 2:
    from numpy._core import multiarray
else:
    from numpy.core import multiarray

#: Key that marks a dict standing for a non-tensor object in a portable checkpoint.
PORTABLE_TAG = '__res2net_mm_portable__'

# numpy dtypes that a torch tensor holds bit for bit; arrays of other dtypes
# (unsigned > 8 bit, strings, objects, other byte orders) travel as lists.
_TENSOR_DTYPES = frozenset(
    np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.int16, np.int32,
                          np.int64, np.float16, np.float32, np.float64))

# returned by a converter that leaves its argument to the recursive walk
_KEEP = object()


def _encode_array(array: np.ndarray) -> dict:
    if array.dtype in _TENSOR_DTYPES:
        data = torch.from_numpy(np.array(array, copy=True))
    else:
        data = array.tolist()
    return {
        PORTABLE_TAG: 'ndarray',
        'dtype': array.dtype.str,
        'shape': list(array.shape),
        'data': data
    }


def _decode_array(entry: dict) -> np.ndarray:
    data = entry['data']
    if isinstance(data, torch.Tensor):
        # Runner.resume maps checkpoints to the training device
        data = data.cpu().numpy()
    return np.array(data, dtype=np.dtype(entry['dtype'])).reshape(
        entry['shape'])


def _encode(obj: Any) -> Any:
    if isinstance(obj, HistoryBuffer):
        return {
            PORTABLE_TAG: 'HistoryBuffer',
            'log_history': _encode_array(obj._log_history),
            'count_history': _encode_array(obj._count_history),
            'max_length': int(obj.max_length)
        }
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, np.generic):
        return {
            PORTABLE_TAG: 'numpy_scalar',
            'dtype': obj.dtype.str,
            'value': obj.item()
        }
    return _KEEP


def _decode(obj: Any) -> Any:
    if not (isinstance(obj, dict) and PORTABLE_TAG in obj):
        return _KEEP
    kind = obj[PORTABLE_TAG]
    if kind == 'ndarray':
        return _decode_array(obj)
    if kind == 'numpy_scalar':
        return np.array(obj['value'], dtype=np.dtype(obj['dtype']))[()]
    if kind == 'HistoryBuffer':
        return HistoryBuffer(
            _decode_array(obj['log_history']),
            _decode_array(obj['count_history']), obj['max_length'])
    raise ValueError(
        f'unknown portable checkpoint entry {PORTABLE_TAG}={kind!r}: the '
        'checkpoint was written by another version of res2net_mm; read it '
        'with that version or drop the entry')


def _walk(obj: Any, convert: Callable[[Any], Any]) -> Any:
    """Apply ``convert`` everywhere in nested dicts, lists and tuples.

    Copy on write: a container is copied (same type, same attributes, e.g. a
    state dict's ``_metadata``) only when something inside it changes, so the
    live objects the checkpoint refers to (a scheduler's milestones, the
    message hub's ``resumed_keys``) are never modified.
    """
    new = convert(obj)
    if new is not _KEEP:
        return new
    if isinstance(obj, dict):
        changed = {}
        for key, value in obj.items():
            new_value = _walk(value, convert)
            if new_value is not value:
                changed[key] = new_value
        if not changed:
            return obj
        out = copy.copy(obj)
        for key, value in changed.items():
            out[key] = value
        return out
    if isinstance(obj, (list, tuple)):
        items = [_walk(item, convert) for item in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        if isinstance(obj, list):
            out = copy.copy(obj)
            out[:] = items
            return out
        if hasattr(obj, '_fields'):  # a namedtuple
            return type(obj)(*items)
        return type(obj)(items)
    return obj


def to_portable(obj: Any) -> Any:
    """Replace ``HistoryBuffer``, numpy arrays and numpy scalars by plain data.

    Args:
        obj: A checkpoint or a part of it (nested dicts, lists, tuples).

    Returns:
        The same structure, where each such object is a dict of tensors,
        lists and numbers tagged with :data:`PORTABLE_TAG`; ``obj`` itself is
        not modified. :func:`from_portable` reverses it exactly.
    """
    return _walk(obj, _encode)


def from_portable(obj: Any) -> Any:
    """Turn the tagged dicts of :func:`to_portable` back into the objects.

    Args:
        obj: A checkpoint or a part of it. Parts that are not tagged (also
            whole checkpoints written by other tools) come back unchanged.

    Returns:
        The structure with ``HistoryBuffer`` objects, numpy arrays and numpy
        scalars of the original dtypes and values.
    """
    return _walk(obj, _decode)


@HOOKS.register_module()
class PortableCheckpointHook(Hook):
    """Write checkpoints that ``torch.load(weights_only=True)`` reads anywhere.

    Before a checkpoint is written, :func:`to_portable` is applied to each of
    its entries; after a checkpoint is loaded (resume, ``load_from``),
    :func:`from_portable`. :func:`res2net_mm.engine.build_runner` registers it,
    so the project's tools always write portable checkpoints; add
    ``custom_hooks=[dict(type='res2net_mm.PortableCheckpointHook')]`` to a
    config to get the same from the toolboxes' own ``tools/train.py``.
    """
    # Last of the before_save_checkpoint hooks: it must see what the others
    # add. (RNGStateHook, registered later by the training loop, writes
    # portable data itself.)
    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key, value in list(checkpoint.items()):
            checkpoint[key] = to_portable(value)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.resume reads the message hub, meta and schedulers after the
        # after_load_checkpoint hooks, so it sees the original objects.
        for key, value in list(checkpoint.items()):
            checkpoint[key] = from_portable(value)


def rebuild_history_buffer(log_history, count_history, max_length):
    """Rebuild a ``HistoryBuffer`` from its data (the reverse of the reducer).

    Checkpoints written by earlier versions of the tools refer to this
    function; it must keep its name and module.

    Args:
        log_history (np.ndarray): Logged values.
        count_history (np.ndarray): Counts of the logged values.
        max_length (int): Capacity of the buffer.

    Returns:
        mmengine.logging.HistoryBuffer: The buffer.
    """
    return HistoryBuffer(log_history, count_history, max_length)


def _reduce_history_buffer(buffer):
    # The class itself, with lists of Python numbers: no numpy reconstructor
    # and no statistics functions (they are class-level and come back from
    # the code).
    return HistoryBuffer, (buffer._log_history.tolist(),
                           buffer._count_history.tolist(), buffer.max_length)


def _add_safe_globals(objects: List) -> None:
    # torch < 2.4 has no allow-list to extend; its torch.load is unrestricted
    # by default.
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(objects)


def numpy_scalar_globals() -> List:
    """What a pickled numpy scalar of a plain (non-object) dtype refers to.

    ``multiarray.scalar(dtype, raw bytes)`` only reinterprets bytes as a
    number of that dtype; object dtypes are not among these classes, so no
    Python object can come out of it.

    Returns:
        list: Globals for ``torch.serialization.add_safe_globals``.
    """
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
        np.uint32, np.uint64, np.float16, np.float32, np.float64, np.str_)]
    return [multiarray.scalar, np.dtype, *dtype_classes]


def allow_mmengine_checkpoints() -> None:
    """Make the checkpoints that plain mmengine Runners write in this process
    load with ``torch.load(weights_only=True)``.

    Called by ``import res2net_mm``. In this process ``torch.save`` (and any
    pickle) writes a ``HistoryBuffer`` as ``HistoryBuffer(log_history,
    count_history, max_length)`` with plain lists, and
    ``torch.load(weights_only=True)`` accepts that class and numpy scalars
    (:func:`numpy_scalar_globals`; mmengine keeps some runtime values, such
    as the ETA, as numpy floats). ``copy.deepcopy`` of a buffer still gives
    an equal ``HistoryBuffer``. Idempotent.
    """
    copyreg.pickle(HistoryBuffer, _reduce_history_buffer)
    _add_safe_globals([HistoryBuffer, *numpy_scalar_globals()])


def training_checkpoint_globals() -> List:
    """Globals that non-portable mmengine training checkpoints contain.

    Returns:
        list: Classes and functions to pass to
        ``torch.serialization.add_safe_globals``.
    """
    # numpy arrays pickle through _reconstruct and ndarray's own state
    return [
        HistoryBuffer,
        rebuild_history_buffer,
        collections.Counter,
        collections.defaultdict,
        multiarray._reconstruct,
        np.ndarray,
        *numpy_scalar_globals(),
    ]


_ALLOWED = False


def allow_training_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read older training checkpoints.

    Idempotent. Needed to resume from checkpoints written by earlier versions
    of the tools (they hold ``HistoryBuffer`` objects and numpy values) with
    mmengine 0.10.7 on torch >= 2.6; portable checkpoints need nothing. Also
    makes ``torch.save`` in this process pickle a ``HistoryBuffer`` as its
    data only (:func:`allow_mmengine_checkpoints`), never through
    ``builtins.getattr``. On older torch the allow-list part does nothing
    (loads there are unrestricted anyway).
    """
    global _ALLOWED
    if _ALLOWED:
        return
    allow_mmengine_checkpoints()
    _add_safe_globals(training_checkpoint_globals())
    _ALLOWED = True
