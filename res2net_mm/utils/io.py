"""Write a file atomically: a temporary name in its folder, renamed when done.

The one writer behind every file res2net_mm and its tools produce (converted
weights, downloads, ONNX exports, configs, plots, JSON results): a failure
(full disk, bad input, Ctrl-C) leaves either the old file or nothing, never a
partial one.
"""
import os
import tempfile
from typing import Any, Callable


def atomic_write(path, write: Callable[[str], Any]) -> str:
    """Call ``write(tmp)``, then rename the finished ``tmp`` to ``path``.

    ``tmp`` lies in the destination's folder, so the rename never crosses file
    systems, and keeps the destination's extension (``.w.tmp-k3j2x.pth`` for
    ``w.pth``): writers that choose the format by it (mmengine's
    ``Config.dump``, matplotlib's ``savefig``) see the real one. The file is
    flushed to disk before the rename and removed if anything fails.

    Args:
        path (str | os.PathLike): Destination; its folder is created.
        write (Callable[[str], Any]): Writes the whole file to the path it is
            given (which exists, empty).

    Returns:
        str: ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    root, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{root}.tmp-', suffix=ext, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


__all__ = ['atomic_write']
