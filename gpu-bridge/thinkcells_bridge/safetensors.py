"""safetensors files through the `safetensors` library: memory-mapped reads, atomic writes, and
errors that name the file and, where one is to blame, the tensor.

Layout (for reading the errors): an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (relative to the data
section after the header), plus an optional "__metadata__" str->str map.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .staging import remove_stale


class SafetensorsError(ValueError):
    """A safetensors file is malformed or a tensor cannot be stored."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield `path + ".tmp-<pid>"` to write; on success fsync it and rename it over `path`,
    so readers never see a half-written file."""
    # What a killed writer left here: its pid is in the name (staging.py).
    remove_stale(os.path.dirname(path) or ".", rf"{re.escape(os.path.basename(path))}\.tmp-(?P<pid>\d+)")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_writer(path):
    """A binary file object over atomic_path(path)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def _bits(dtype: str) -> int:
    # BOOL is a byte; every other safetensors dtype names its width (F32, BF16, F8_E4M3, F4, ...).
    return 8 if dtype == "BOOL" else int(re.search(r"\d+", dtype).group(0))


def _culprit(path: str) -> str:
    """Which tensor a header the library refused is wrong about, when one is: the library's
    message for a truncated file or a size that disagrees with the shape names none."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
            data_size = os.fstat(f.fileno()).st_size - 8 - length
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            needed = math.ceil(math.prod(info["shape"]) * _bits(info["dtype"]) / 8)
            if end - begin != needed:
                return (
                    f"; tensor {name!r}: {info['dtype']} shape {info['shape']} needs {needed} bytes but "
                    f"data_offsets [{begin}, {end}] span {end - begin}"
                )
            if end > data_size:
                return (
                    f"; tensor {name!r}: data_offsets [{begin}, {end}] lie outside the {data_size}-byte "
                    "data section (truncated file?)"
                )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        pass  # the library's own message is all there is to say
    return ""


def read_safetensors(path):
    """Every tensor of a safetensors file, memory-mapped (pages load as they are used), and its
    metadata: (tensors, metadata). Files are only ever replaced by renaming (atomic_path), so
    a mapping stays valid after the file is rewritten or deleted."""
    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except SafetensorError as e:
        raise SafetensorsError(f"{path}: {e}{_culprit(path)}") from None
    return tensors, metadata


def _storable(tensors: dict) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own memory: the library refuses views and tensors
    sharing storage (tied embeddings), which must be written as separate copies."""
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(f"invalid tensor name {name!r}")
        if not isinstance(t, torch.Tensor):
            raise SafetensorsError(f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor")
        t = t.detach().to("cpu").contiguous()
        pointer = t.untyped_storage().data_ptr()
        if t.numel() and pointer in seen:
            t = t.clone()
        seen.add(pointer)
        out[name] = t
    return out


def write_safetensors(path, tensors, metadata=None):
    """Write `tensors` (name -> torch.Tensor) to `path` atomically; an existing file stays as it
    was when anything fails."""
    path = os.fspath(path)
    metadata = dict(metadata or {})
    for k, v in metadata.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            raise SafetensorsError(f"{path}: metadata must map strings to strings, got {k!r}: {v!r}")
    try:
        storable = _storable(tensors)
    except SafetensorsError as e:
        raise SafetensorsError(f"{path}: {e}") from None
    try:
        with atomic_path(path) as tmp:
            save_file(storable, tmp, metadata=metadata or None)
    except KeyError as e:  # the library's dtype table has no entry for this one
        names = [name for name, t in storable.items() if t.dtype == e.args[0]]
        if not names:
            raise
        raise SafetensorsError(
            f"{path}: tensor {names[0]!r} has dtype {e.args[0]}, which safetensors cannot store"
        ) from None
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise SafetensorsError(f"{path}: {e}") from None
