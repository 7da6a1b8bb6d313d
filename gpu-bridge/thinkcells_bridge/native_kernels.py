"""The CPU decode step in C (native/decode.c), compiled on first use with the system's C
compiler and loaded with ctypes.

Used only where it applies: CPU, fp32, no autograd, inside `inference_weights` (sampling).
Without a compiler, without an optimised BLAS (see blas_sgemm), or with THINKCELLS_NATIVE=0,
the model runs its plain torch code instead; tests hold the two to the same numbers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

_SOURCE = Path(__file__).parent / "native" / "decode.c"
_LAYER_POINTERS = 9  # norm1, qkv, qkv_bias, o, norm2, gate_up, down, kt, vt (decode.c)
_native: tuple[ctypes.CDLL, Sgemm] | None | bool = False  # False: not tried yet


class Sgemm(NamedTuple):
    address: int
    fortran: bool  # the Fortran interface (sgemm_), not CBLAS's
    source: str  # which library and symbol, for status and the benchmarks


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "thinkcells" / "native"


def _cpu_key() -> str:
    # -march=native output only runs on CPUs with the same features: key the cache by them.
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def _compile() -> ctypes.CDLL | None:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    digest = hashlib.sha256(_SOURCE.read_bytes() + _cpu_key().encode()).hexdigest()[:16]
    target = _cache_dir() / f"decode-{digest}.so"
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
    P, I = ctypes.c_void_p, ctypes.c_int64
    lib.decode_step_f32.restype = ctypes.c_int
    lib.decode_step_f32.argtypes = [P, ctypes.c_int, I, P, P, P, P, I, I, I, I, I, I, I, I, ctypes.c_float, ctypes.c_int]
    return lib


def _symbol(library: str, names: tuple[str, ...]) -> tuple[int, str] | None:
    try:
        lib = ctypes.CDLL(library)
    except OSError:
        return None
    for name in names:
        try:
            return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value, name
        except AttributeError:
            continue
    return None


def _candidates():
    """(library, symbols, label) in order of preference."""
    # torch's own BLAS: PyPI's x86 wheels carry MKL, which exports only the Fortran sgemm_.
    yield str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"), ("cblas_sgemm", "sgemm_"), "torch's BLAS"
    # Otherwise OpenBLAS from PyPI (requirements.txt, [optional]): optimised wherever pip runs.
    try:
        import scipy_openblas32
        for library in sorted(glob.glob(os.path.join(scipy_openblas32.get_lib_dir(), "lib*.so*"))):
            yield library, ("scipy_cblas_sgemm",), "scipy-openblas32"
    except ImportError:
        pass
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas"), "libblas.so.3"):
        if name:
            yield name, ("cblas_sgemm",), "system BLAS"


def torch_blas() -> str:
    """The BLAS torch was built with, as its build configuration names it ("mkl", "open", ...)."""
    found = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return found.group(1) if found else "unknown"


def blas_sgemm() -> Sgemm | None:
    """An optimised sgemm for the native step: torch's own BLAS where it exports one, else
    OpenBLAS from PyPI, else the system's."""
    for library, names, label in _candidates():
        found = _symbol(library, names)
        if found:
            address, name = found
            return Sgemm(address, name.endswith("_"), f"{label} ({os.path.basename(library)}: {name})")
    return None


def native_library() -> tuple[ctypes.CDLL, Sgemm] | None:
    """(library, its sgemm), or None when the native step is unavailable."""
    global _native
    if _native is False:
        _native = None
        if os.environ.get("THINKCELLS_NATIVE", "1") != "0":
            sgemm = blas_sgemm()
            lib = _compile() if sgemm else None
            _native = (lib, sgemm) if lib is not None else None
    return _native  # type: ignore[return-value]


_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _threads(work: int) -> int:
    # Attention streams the whole cache, so it scales with cores even where torch's tiny
    # per-token ops do not; waking threads only pays for larger steps.
    return 1 if work < 100_000 else _CORES


def decode_step(model, x: torch.Tensor, rope: torch.Tensor, cache) -> bool:
    """Runs every layer for one new token per row, in place on x [B, 1, hidden], writing the
    cache's next slot. False (and nothing done) when the native step does not apply.
    rope: [B, 1, 2, D] cos and signed sin per row (CausalLM.rope)."""
    native = native_library()
    layers = list(model.model.layers)
    if (native is None or x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled()
            or layers[0].self_attn.inference is None or not model.config.llama_shaped):
        return False
    lib, sgemm = native
    if cache.native_pointers is None:
        # Weights and cache are fixed for the whole sampling call: collect their addresses once.
        pointers = []
        for i, layer in enumerate(layers):
            attn, mlp = layer.self_attn.inference, layer.mlp.inference
            pointers += [layer.input_layernorm.weight, attn.qkv_t, attn.qkv_bias, attn.o_t,
                         layer.post_attention_layernorm.weight, mlp.gate_up_t, mlp.down_t, cache.k[i], cache.v[i]]
        assert len(pointers) == _LAYER_POINTERS * len(layers)
        cache.native_pointers = (ctypes.c_void_p * len(pointers))(*[None if p is None else p.data_ptr() for p in pointers])
    c = model.config
    b = x.shape[0]
    length = cache.length + 1
    rope = rope.contiguous()  # held in a name: C reads it after this line
    status = lib.decode_step_f32(
        sgemm.address, sgemm.fortran, len(layers), cache.native_pointers, x.data_ptr(), rope.data_ptr(), cache.start.data_ptr(),
        b, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size,
        cache.capacity, length, c.rms_norm_eps, _threads(b * c.num_attention_heads * length * c.head_dim))
    if status != 0:
        raise MemoryError("decode step: could not allocate its scratch memory")
    return True
