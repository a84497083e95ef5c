"""Read and write MindSpore ``.ckpt`` files without MindSpore.

A ``.ckpt`` file is a protobuf message (MindSpore's ``checkpoint.proto``,
proto2; checked against ``mindspore.train.checkpoint_pb2`` in the tests)::

    message Checkpoint {
      message Value {
        required string tag = 1;           // parameter name
        oneof value {
          TensorProto tensor = 2;
          MapTensorProto maptensor = 3;    // not a plain weight: skipped
        }
      }
      repeated Value value = 1;
    }
    message TensorProto {
      repeated int64 dims = 1;             // none for a scalar
      required string tensor_type = 2;     // 'Float32', 'Float16', 'Int32' ..
      required bytes tensor_content = 3;   // little-endian values, C order
    }

The wire format is decoded here in pure Python so that MindCV weights convert
on machines without MindSpore. MindSpore writes tensors over 512 MiB as several
``Value`` entries with the same tag (their contents are concatenated, as its
loader does) and, with ``crc_check=True``, appends ``b'crc_num'`` and a 10-byte
CRC32 (verified here).
"""
import binascii
from typing import Dict, Iterator, List, Tuple

import numpy as np

# MindSpore's tensor_type strings -> numpy dtypes (little-endian).
_DTYPES = {
    'Float16': np.float16,
    'Float32': np.float32,
    'Float64': np.float64,
    'Int8': np.int8,
    'Int16': np.int16,
    'Int32': np.int32,
    'Int64': np.int64,
    'UInt8': np.uint8,
    'UInt16': np.uint16,
    'UInt32': np.uint32,
    'UInt64': np.uint64,
    'Bool': np.bool_,
}
_TYPE_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class CkptFormatError(ValueError):
    """The bytes are not a (complete) MindSpore checkpoint."""


def _varint(buf: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CkptFormatError('truncated varint (file cut short?)')
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CkptFormatError('malformed varint (not a protobuf file?)')


def _fields(buf: memoryview) -> Iterator[Tuple[int, int, object]]:
    """Yield ``(field_number, wire_type, value)`` of one protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise CkptFormatError('field number 0 (not a protobuf file?)')
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == _FIXED32:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise CkptFormatError(
                f'unsupported protobuf wire type {wire} (not a MindSpore '
                f'checkpoint, or an encrypted one?)')
        if pos > end:
            raise CkptFormatError(
                'a field runs past the end of the data (file truncated?)')
        yield number, wire, value


def _parse_tensor(buf: memoryview) -> Tuple[List[int], str, memoryview]:
    dims: List[int] = []
    dtype, content = None, None
    for number, wire, value in _fields(buf):
        if number == 1:
            if wire == _VARINT:
                dims.append(value)
            elif wire == _BYTES:  # packed encoding
                pos = 0
                while pos < len(value):
                    dim, pos = _varint(value, pos)
                    dims.append(dim)
        elif number == 2 and wire == _BYTES:
            dtype = bytes(value).decode('utf-8')
        elif number == 3 and wire == _BYTES:
            content = value
    if dtype is None or content is None:
        raise CkptFormatError('a tensor has no type or no content')
    return dims, dtype, content


def parse_ckpt(data: bytes) -> Dict[str, np.ndarray]:
    """Decode the bytes of a MindSpore ``.ckpt`` into ``{name: array}``.

    Args:
        data (bytes): The whole file.

    Returns:
        dict: Parameter names (in file order) to numpy arrays (writable
        copies).
        Entries of type ``str`` (strings MindSpore can append) are kept as
        Python strings.

    Raises:
        CkptFormatError: When the bytes are not a complete checkpoint.
    """
    if bytes(data[-17:-10]) == b'crc_num':
        # save_checkpoint(..., crc_check=True) appends 'crc_num' + a 10-byte
        # big-endian CRC32 of everything before it (not protobuf).
        crc = int.from_bytes(data[-10:], 'big')
        data = data[:-17]
        if binascii.crc32(data) != crc:
            raise CkptFormatError('CRC32 check failed (file corrupt)')
    buf = memoryview(data)
    chunks: Dict[str, list] = {}
    for number, wire, value in _fields(buf):
        if number != 1 or wire != _BYTES:
            continue  # fields MindSpore may add later (e.g. checksums)
        tag, tensor = None, None
        for n, w, v in _fields(value):
            if n == 1 and w == _BYTES:
                tag = bytes(v).decode('utf-8')
            elif n == 2 and w == _BYTES:
                tensor = _parse_tensor(v)
        if tag is None or tensor is None:
            continue  # e.g. a map tensor: not a plain parameter
        chunks.setdefault(tag, []).append(tensor)
    if not chunks:
        raise CkptFormatError('no parameters found')
    out: Dict[str, np.ndarray] = {}
    for tag, parts in chunks.items():
        dims, dtype = parts[0][0], parts[0][1]
        content = b''.join(bytes(p[2]) for p in parts) if len(parts) > 1 \
            else parts[0][2]
        if dtype == 'str':
            # numpy unicode (UCS-4) bytes, as MindSpore writes strings
            out[tag] = bytes(content).decode('utf-32-le').rstrip('\x00')
            continue
        if dims == [0]:
            dims = []  # MindSpore's loader reads dims [0] as a scalar too
        if dtype == 'BFloat16':
            # numpy has no bfloat16: widen losslessly to float32.
            raw = np.frombuffer(content, dtype='<u2').astype(np.uint32)
            if raw.size != int(np.prod(dims)):
                raise CkptFormatError(
                    f'parameter {tag!r}: shape {tuple(dims)} of BFloat16 '
                    f'does not match its {len(content)} bytes (truncated?)')
            out[tag] = (raw << 16).view(np.float32).reshape(dims)
            continue
        if dtype not in _DTYPES:
            raise CkptFormatError(
                f'parameter {tag!r} has unsupported type {dtype!r}')
        np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder('<')
        count = 1
        for d in dims:
            count *= d
        if count * np_dtype.itemsize != len(content):
            raise CkptFormatError(
                f'parameter {tag!r}: shape {tuple(dims)} of {dtype} needs '
                f'{count * np_dtype.itemsize} bytes, the file holds '
                f'{len(content)} (file truncated or corrupt?)')
        out[tag] = np.frombuffer(content, dtype=np_dtype).astype(
            np_dtype.newbyteorder('='), copy=True).reshape(dims)
    return out


def _key(number: int, wire: int) -> bytes:
    return _encode_varint((number << 3) | wire)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _key(number, _BYTES) + _encode_varint(len(payload)) + payload


def serialize_ckpt(params: Dict[str, np.ndarray]) -> bytes:
    """Encode ``{name: array}`` as a MindSpore ``.ckpt`` (inverse of parse).

    Args:
        params (dict): Parameter names to numpy arrays of a supported dtype.

    Returns:
        bytes: The file content, loadable by ``mindspore.load_checkpoint``.
    """
    out = bytearray()
    for name, array in params.items():
        array = np.asarray(array, order='C')  # keeps 0-d arrays 0-d
        dtype = _TYPE_NAMES.get(array.dtype.newbyteorder('='))
        if dtype is None:
            raise TypeError(f'{name}: dtype {array.dtype} has no MindSpore '
                            f'checkpoint type')
        dims = list(array.shape)  # a scalar has none, as MindSpore writes it
        tensor = b''.join(_key(1, _VARINT) + _encode_varint(d) for d in dims)
        tensor += _length_delimited(2, dtype.encode('utf-8'))
        tensor += _length_delimited(
            3, array.astype(array.dtype.newbyteorder('<')).tobytes())
        value = _length_delimited(1, name.encode('utf-8'))
        value += _length_delimited(2, tensor)
        out += _length_delimited(1, value)
    return bytes(out)


def looks_like_ckpt(head: bytes) -> bool:
    """Cheap test on the first bytes: a Checkpoint starts with field 1."""
    return len(head) >= 2 and head[0] == 0x0A


__all__ = ['parse_ckpt', 'serialize_ckpt', 'looks_like_ckpt',
           'CkptFormatError']
