"""The CPU decode step in C (native/decode.c), compiled on first use with the system's C
compiler and loaded with ctypes.

Beside the model, not inside it: sampling asks native_decoder for a decoder and, where one
applies (a Llama-shaped native model, CPU, fp32), runs its one-token steps through it; the
prefill and everything else run the model's plain torch code. Without a compiler, without an
optimised BLAS (see blas_sgemm), or with THINKCELLS_NATIVE=0 there is no decoder; tests hold
the two paths to the same numbers.
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

from .lora import merged_weight

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
    # Compiled with -ffast-math, linked without it: gcc < 13 links crtfastmath.o into a shared
    # library built with that flag, which turns on flush-to-zero for the whole process when the
    # library loads, changing every torch op's handling of subnormals.
    compile_flags = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC"]
    link_flags = ["-shared", "-fopenmp"]
    digest = hashlib.sha256(
        _SOURCE.read_bytes() + _cpu_key().encode() + " ".join(compile_flags + link_flags).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"decode-{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out, obj = Path(tmp) / target.name, Path(tmp) / "decode.o"
            for cmd in (
                [cc, *compile_flags, "-c", "-o", str(obj), str(_SOURCE)],
                [cc, *link_flags, "-o", str(out), str(obj), "-lm"],
            ):
                if subprocess.run(cmd, capture_output=True).returncode != 0:
                    return None
            os.replace(out, target)  # atomic: concurrent bridges never load a half-written file
    lib = ctypes.CDLL(str(target))
    P, I64 = ctypes.c_void_p, ctypes.c_int64
    lib.decode_step_f32.restype = ctypes.c_int
    lib.decode_step_f32.argtypes = [
        P,
        ctypes.c_int,
        I64,
        P,
        P,
        P,
        P,
        I64,
        I64,
        I64,
        I64,
        I64,
        I64,
        I64,
        I64,
        ctypes.c_float,
        ctypes.c_int,
    ]
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


# The widest model (hidden size) sampling takes the C step for by default. Wider, the matmuls set
# a decode step's speed and torch's fixed-shape step is as fast (bench/decode_widths.py, 2 cores,
# MKL: the C step 1.5-5x torch's at hidden 64-256, 1.1x at 512, 0.85-1.09x at 640-896; 0.88x at
# Qwen2.5-0.5B's shape) without the C step's per-call copy of every projection (1.4 GB there).
NATIVE_MAX_HIDDEN = 512


def native_decoder(model, forced: bool = False) -> NativeDecoder | None:
    """The C decode step for one sampling call of `model`, or None where it does not apply:
    no library, not a Llama-shaped native model, not fp32 on the CPU, or (unless `forced`)
    wider than NATIVE_MAX_HIDDEN."""
    native = native_library()
    weight = model.output_weight()
    if (
        native is None
        or model.backend != "native"
        or not model.config.llama_shaped
        or weight.device.type != "cpu"
        or weight.dtype != torch.float32
        or (model.config.hidden_size > NATIVE_MAX_HIDDEN and not forced)
    ):
        return None
    return NativeDecoder(model, *native)


class NativeDecoder:
    """Runs every layer for one new token per row in C, writing the cache's next slot. Built
    for one sampling call, whose weights cannot change while it runs: the projections are
    copied as decode.c reads them (q/k/v and gate/up concatenated, each matrix transposed to
    [in, out], LoRA adapters that are on merged in), so sampling sees the policy being trained."""

    def __init__(self, model, lib: ctypes.CDLL, sgemm: Sgemm):
        self.model, self.lib, self.sgemm = model, lib, sgemm

        def t(*linears) -> torch.Tensor:
            return torch.cat([merged_weight(linear) for linear in linears]).t().contiguous().detach()

        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            bias = (
                None
                if attn.q_proj.bias is None
                else torch.cat((attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias)).detach()
            )
            self.layers.append(
                [
                    layer.input_layernorm.weight.detach(),
                    t(attn.q_proj, attn.k_proj, attn.v_proj),
                    bias,
                    t(attn.o_proj),
                    layer.post_attention_layernorm.weight.detach(),
                    t(mlp.gate_proj, mlp.up_proj),
                    t(mlp.down_proj),
                ]
            )
        self._pointers = None  # (cache, the addresses decode.c reads), made at the cache's first step

    def step(self, ids: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        """ids, positions: [B, 1] → final-norm hidden states [B, 1, hidden]."""
        model, c = self.model, self.model.config
        x = model.model.embed_tokens(ids).contiguous()
        length = cache.length + 1
        rope = model.rope(positions, length, x.dtype).contiguous()  # held in a name: C reads it after this line
        if self._pointers is None or self._pointers[0] is not cache:
            tensors = [t for i, weights in enumerate(self.layers) for t in (*weights, cache.k[i], cache.v[i])]
            assert len(tensors) == _LAYER_POINTERS * len(self.layers)
            self._pointers = (
                cache,
                (ctypes.c_void_p * len(tensors))(*[None if t is None else t.data_ptr() for t in tensors]),
            )
        b = x.shape[0]
        status = self.lib.decode_step_f32(
            self.sgemm.address,
            self.sgemm.fortran,
            len(self.layers),
            self._pointers[1],
            x.data_ptr(),
            rope.data_ptr(),
            cache.start.data_ptr(),
            b,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.intermediate_size,
            cache.capacity,
            length,
            c.rms_norm_eps,
            _threads(b * c.num_attention_heads * length * c.head_dim),
        )
        if status != 0:
            raise MemoryError("decode step: could not allocate its scratch memory")
        cache.length = length
        return model.model.norm(x)
