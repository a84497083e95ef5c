"""Which container a weight file is, from its first bytes."""
import json
import os

from .errors import CheckpointError
from .mindspore_ckpt import looks_like_ckpt


def _is_safetensors(path, head: bytes, size: int) -> bool:
    """8-byte little-endian header length, then that much JSON."""
    if len(head) < 9 or head[8:9] != b'{':
        return False
    header_len = int.from_bytes(head[:8], 'little')
    if not 0 < header_len <= min(size - 8, 100 << 20):
        return False
    with open(path, 'rb') as f:
        f.seek(8)
        try:
            return isinstance(json.loads(f.read(header_len)), dict)
        except ValueError:
            return False


def sniff_container(path) -> str:
    """Tell the container from the first bytes of the file.

    Args:
        path (str): The file.

    Returns:
        str: ``'torch'``, ``'safetensors'`` or ``'mindspore_ckpt'``.

    Raises:
        CheckpointError: When the file is missing, empty or of no known kind.
    """
    if not os.path.exists(path):
        raise CheckpointError(path, 'no such file')
    if not os.path.isfile(path):
        raise CheckpointError(path, 'not a file')
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(path, 'the file is empty (0 bytes)',
                              'Was a download or a save interrupted?')
    with open(path, 'rb') as f:
        head = f.read(64)
    if _is_safetensors(path, head, size):
        return 'safetensors'
    if head[:4] == b'PK\x03\x04' or head[:1] == b'\x80':
        return 'torch'  # zip (torch >= 1.6) or legacy pickle
    if looks_like_ckpt(head):
        return 'mindspore_ckpt'
    text = head[:32].decode('utf-8', errors='replace')
    raise CheckpointError(
        path, f'not a checkpoint: the content (starting {text!r}) is none of '
        f'PyTorch, safetensors or MindSpore .ckpt',
        'Check that the file is a weight file and was downloaded completely')
