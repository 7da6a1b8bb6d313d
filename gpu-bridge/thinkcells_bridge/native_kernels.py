"""CPU kernels in C, compiled on first use with the system's C compiler and loaded with ctypes.

Only hot loops that torch 1.x runs badly on CPU live here. When no compiler is available (or
THINKCELLS_NATIVE=0) callers fall back to plain torch code; tests check both give the same
numbers.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

_SOURCE = Path(__file__).parent / "native" / "decode_attention.c"
_lib: ctypes.CDLL | None | bool = False  # False: not tried yet


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "thinkcells" / "native"


def _cpu_key() -> str:
    # -march=native output only runs on CPUs with the same features: key the cache by them.
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return flags


def _build() -> ctypes.CDLL | None:
    if os.environ.get("THINKCELLS_NATIVE", "1") == "0":
        return None
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    source = _SOURCE.read_bytes()
    digest = hashlib.sha256(source + _cpu_key().encode()).hexdigest()[:16]
    target = _cache_dir() / f"decode_attention-{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            cmd = [cc, "-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC",
                   "-o", str(out), str(_SOURCE), "-lm"]
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                return None
            os.replace(out, target)  # atomic: concurrent bridges never load a half-written file
    lib = ctypes.CDLL(str(target))
    fn = lib.decode_attention_f32
    fn.restype = None
    P, I = ctypes.c_void_p, ctypes.c_int64
    fn.argtypes = [P, I, P, P, I, P, P, P, P, P, I, I, I, I, I, I, ctypes.c_float, ctypes.c_int]
    return lib


def native_library() -> ctypes.CDLL | None:
    global _lib
    if _lib is False:
        _lib = _build()
    return _lib  # type: ignore[return-value]




_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _threads(work: int) -> int:
    # The kernel streams the whole cache, so it scales with cores even where torch's tiny
    # per-token ops do not; waking threads only pays for larger steps.
    return 1 if work < 100_000 else _CORES


def _rows(x: torch.Tensor) -> int | None:
    """Row stride of a [B, heads, D] view whose heads and dims are contiguous, else None."""
    _, heads, d = x.shape
    return x.stride(0) if x.stride(2) == 1 and (x.stride(1) == d or heads == 1) else None


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor,
                     start: torch.Tensor, length: int, scratch: torch.Tensor) -> torch.Tensor | None:
    """Writes this step's keys and values into cache slot length-1, then attends: the native
    decode step, or None when it does not apply (no library, not CPU fp32) and nothing was
    written. q: [B, H, D]; k, v: [B, KV, D], each may be a row-strided view (of one fused
    projection); kt, vt: one layer's cache, slots last [B, KV, D, CAP]; start: int64 [B]."""
    lib = native_library()
    if lib is None or q.device.type != "cpu" or q.dtype != torch.float32:
        return None
    b, h, d = q.shape
    kv, cap = kt.shape[1], kt.shape[3]
    if _rows(q) is None:
        q = q.contiguous()
    if _rows(k) is None or _rows(v) is None or k.stride(0) != v.stride(0):
        k, v = k.contiguous(), v.contiguous()
    out = torch.empty(b, h, d, dtype=q.dtype)
    lib.decode_attention_f32(q.data_ptr(), q.stride(0), k.data_ptr(), v.data_ptr(), k.stride(0),
                             kt.data_ptr(), vt.data_ptr(), out.data_ptr(), scratch.data_ptr(),
                             start.data_ptr(), b, h, kv, cap, d, length, 1.0 / d ** 0.5,
                             _threads(b * h * length * d))
    return out
