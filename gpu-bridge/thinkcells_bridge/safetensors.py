"""The safetensors file format, read and written without the `safetensors` package.

Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON mapping tensor
names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
data section that starts at 8 + N), plus an optional "__metadata__" str->str map.
"""

import contextlib
import json
import math
import os
import struct
import sys

import torch

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}

# The format is little-endian; raw bytes are handed to torch as-is, which is only
# right on a little-endian host (every platform torch ships wheels for).
_LITTLE_ENDIAN = sys.byteorder == "little"


class SafetensorsError(ValueError):
    """A safetensors file is malformed or a tensor cannot be stored."""


@contextlib.contextmanager
def atomic_writer(path):
    """Open `path + ".tmp-<pid>"` for binary writing; on success fsync it and
    rename over `path`, so readers never see a half-written file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _itemsize(dtype):
    return torch.empty((), dtype=dtype).element_size()


def _parse_header(path, raw, data_size):
    """Validate the JSON header; return (metadata, [(name, dtype, shape, begin, end)])."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")

    entries = []
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict):
            raise SafetensorsError(f"{where}: header entry is not an object")
        dtype = _DTYPES.get(info["dtype"]) if isinstance(info.get("dtype"), str) else None
        if dtype is None:
            raise SafetensorsError(f"{where}: unknown dtype {info.get('dtype')!r}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise SafetensorsError(f"{where}: invalid shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise SafetensorsError(f"{where}: invalid data_offsets {offsets!r}")
        begin, end = offsets
        expected = math.prod(shape) * _itemsize(dtype)
        if end - begin != expected:
            raise SafetensorsError(
                f"{where}: {info['dtype']} shape {shape} needs {expected} bytes "
                f"but data_offsets [{begin}, {end}] span {end - begin}"
            )
        if end > data_size:
            raise SafetensorsError(
                f"{where}: data_offsets [{begin}, {end}] lie outside the "
                f"{data_size}-byte data section (truncated file?)"
            )
        entries.append((name, dtype, shape, begin, end))

    by_offset = sorted(entries, key=lambda e: (e[3], e[4]))
    for prev, cur in zip(by_offset, by_offset[1:]):
        if cur[3] < prev[4]:
            raise SafetensorsError(
                f"{path}: tensors {prev[0]!r} and {cur[0]!r} have overlapping data_offsets"
            )
    return metadata, entries


def read_safetensors(path):
    """Read every tensor of a safetensors file into memory.

    Returns (tensors, metadata). Tensors own their memory, so the file may be
    deleted or overwritten afterwards.
    """
    path = os.fspath(path)
    if not _LITTLE_ENDIAN:
        raise SafetensorsError(f"{path}: reading safetensors needs a little-endian host")
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        if file_size < 8:
            raise SafetensorsError(f"{path}: file is {file_size} bytes, shorter than the 8-byte header length")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > file_size - 8:
            raise SafetensorsError(
                f"{path}: header length {header_len} is larger than the {file_size - 8} bytes after it"
            )
        data_start = 8 + header_len
        metadata, entries = _parse_header(path, f.read(header_len), file_size - data_start)

        tensors = {}
        for name, dtype, shape, begin, end in entries:
            if begin == end:
                # torch.frombuffer rejects empty buffers.
                tensors[name] = torch.empty(shape, dtype=dtype)
                continue
            # Read straight into a fresh bytearray: one copy, owned by the tensor
            # (torch.frombuffer keeps the buffer alive), nothing tied to the file.
            buf = bytearray(end - begin)
            f.seek(data_start + begin)
            if f.readinto(buf) != len(buf):
                raise SafetensorsError(f"{path}: tensor {name!r}: file ended while reading its data")
            tensors[name] = torch.frombuffer(buf, dtype=dtype).reshape(shape)
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` (name -> torch.Tensor) to `path` atomically.

    Tensors are moved to CPU and made contiguous; names are stored sorted with
    contiguous data_offsets, and the header is space-padded to 8-byte alignment.
    """
    path = os.fspath(path)
    if not _LITTLE_ENDIAN:
        raise SafetensorsError(f"{path}: writing safetensors needs a little-endian host")
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            raise SafetensorsError(f"{path}: metadata must map strings to strings, got {k!r}: {v!r}")

    for name in tensors:
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(f"{path}: invalid tensor name {name!r}")

    header = {"__metadata__": metadata} if metadata else {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise SafetensorsError(f"{path}: tensor {name!r} is a {type(t).__name__}, not a torch.Tensor")
        if t.dtype not in _NAMES:
            raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype {t.dtype}")
        t = t.detach().to("cpu").contiguous()
        # Reinterpret as bytes (no copy) so bf16/fp16 bit patterns, NaN payloads
        # included, are written exactly.
        raw = t.reshape(-1).view(torch.uint8).numpy()
        header[name] = {
            "dtype": _NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + raw.nbytes],
        }
        offset += raw.nbytes
        blobs.append(raw)

    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with atomic_writer(path) as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in blobs:
            f.write(memoryview(raw))
