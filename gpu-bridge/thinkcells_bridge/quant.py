"""Quantized frozen base weights, QLoRA-style (arXiv 2305.14314), in plain PyTorch.

`quantize_base(model, "int8" | "nf4")` stores the weight of every decoder-layer projection
(the model's `adapter_targets`: q/k/v/o/gate/up/down in the native families) quantized; embeddings, norms and lm_head stay as they are.

- int8: weight-only, symmetric per output channel: W[r] ≈ scale[r] · q[r], q in -127..127,
  scale[r] = absmax(W[r]) / 127. 8 bits per weight plus one scale per row (~4× below fp32).
- nf4: 4-bit NormalFloat: blocks of 64 consecutive weights (row-major), each scaled by its
  absmax to [-1, 1] and rounded to the nearest of 16 code values spaced as quantiles of a
  normal distribution. Two codes per byte, the first in the high nibble, and one absmax per
  block: bitsandbytes' own layout. 4.5 bits per weight (~7× below fp32); QLoRA's double
  quantization of the absmax values is not done.

A quantized layer keeps its class family (QuantizedLinear is an nn.Linear, QuantizedLoRALinear
a LoRALinear), and its `weight` is a property that dequantizes on every read, to the dtype of
its scales (the model dtype: `.to()` casts them): forward, `lora.merged_weight` (hence
sampling and the native decode step) and LoRA removal all read it unchanged. The dequantized
weight is transient: forward builds it per call and backward builds it again (see
_FrozenQuantizedMatmul), so only the packed codes stay resident. The base is frozen: codes
and scales are buffers, never parameters, and gradients reach only x (and LoRA, biases).

`state_dict()` still holds each base weight under its Hugging Face name
(`model.layers.0.self_attn.q_proj.weight`), dequantized to the model dtype, in place of the
codes and scales: saving a quantized model writes an ordinary checkpoint. Loading such a state
dict into a quantized model quantizes the weights again.

On CUDA with bitsandbytes installed, NF4 dequantization runs its fused kernel (the storage
layout is the same); on CPU the plain PyTorch path always runs. test_quant checks codes, absmax
and dequantization against bitsandbytes' own quantize_4bit / dequantize_4bit, value for value.
int8 needs nothing from it: dequantizing is one multiply, and its Linear8bitLt is LLM.int8()
(int8 activations too), not this weight-only scheme.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .lora import LoRALinear

SCHEMES = ("int8", "nf4")
NF4_BLOCK = 64

# The 16 NF4 values: QLoRA appendix E, bitsandbytes' get_4bit_type("nf4").
NF4_CODE = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
_TINY = torch.finfo(torch.float32).tiny  # divides all-zero rows and blocks to 0, not nan


# -- the two formats -------------------------------------------------------------------------


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] → (int8 codes [out, in], scales [out] in the weight's dtype)."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).to(weight.dtype)
    # Rounded against the scale as stored (maybe bf16), so codes and scales agree.
    codes = torch.round(w / scales.float().clamp(min=_TINY)[:, None]).clamp_(-127, 127)
    return codes.to(torch.int8), scales


def dequantize_int8(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return codes.to(scales.dtype) * scales[:, None]


def quantize_nf4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any shape → (uint8 code pairs [blocks · 32], absmax [blocks] in the weight's dtype),
    blocks = ⌈numel / 64⌉: the flattened weight zero-padded to whole blocks."""
    flat = weight.detach().float().reshape(-1)
    blocks = F.pad(flat, (0, -flat.numel() % NF4_BLOCK)).view(-1, NF4_BLOCK)
    absmax = blocks.abs().amax(dim=1).to(weight.dtype)
    # Times the reciprocal, not divided, as bitsandbytes' CUDA kernel (and its CPU backend, in
    # whole blocks): the two differ in the last bit, which flips the code of a value within a
    # rounding of a midpoint.
    normalized = blocks * (1 / absmax.float().clamp(min=_TINY))[:, None]
    code = torch.tensor(NF4_CODE, device=weight.device)
    # The nearest code value: the number of midpoints between neighbouring values below x; a
    # value exactly on a midpoint takes the lower code, as in bitsandbytes (x > midpoint → upper).
    codes = torch.bucketize(normalized, (code[1:] + code[:-1]) / 2).to(torch.uint8).view(-1, 2)
    return (codes[:, 0] << 4) | codes[:, 1], absmax


@functools.cache
def _nf4_pairs(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[256, 2]: the two values a packed byte stands for, so dequantizing is one gather."""
    code = torch.tensor(NF4_CODE, dtype=dtype, device=device)
    byte = torch.arange(256, device=device)
    return torch.stack((code[byte >> 4], code[byte & 15]), dim=1)


def dequantize_nf4(codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    bnb = _bitsandbytes() if codes.is_cuda else None
    if bnb is not None:
        out = torch.empty(shape, dtype=absmax.dtype, device=codes.device)
        # Its kernel wants fp32 absmax and reads only `numel` values (not our padding).
        return bnb.dequantize_4bit(
            codes.view(-1, 1), absmax=absmax.float(), out=out, blocksize=NF4_BLOCK, quant_type="nf4"
        )
    # An embedding lookup takes int32 indices: half the transient memory of indexing (int64),
    # and about twice as fast on CPU.
    pairs = F.embedding(codes.int(), _nf4_pairs(codes.device, absmax.dtype))
    values = pairs.view(-1, NF4_BLOCK) * absmax[:, None]
    return values.view(-1)[: math.prod(shape)].view(shape)


@functools.cache
def _bitsandbytes():
    """bitsandbytes.functional, or None. Imported on first CUDA use only: the import is slow
    (it loads torch.compile), may fail in ways other than ImportError on machines without a
    working CUDA setup, and on CPUs with AVX512-BF16 asks the Hugging Face Hub for a CPU matmul
    kernel through `kernels` where that is installed (transformers needs it)."""
    try:
        import bitsandbytes.functional as bnb_functional
    except Exception:
        return None
    return bnb_functional


_QUANTIZE = {"int8": quantize_int8, "nf4": quantize_nf4}


# -- layers ----------------------------------------------------------------------------------


class _FrozenQuantizedMatmul(torch.autograd.Function):
    """x Wᵀ for a frozen quantized W, dequantized in forward and again in backward. F.linear
    on the dequantized weight would keep it alive for backward: every layer's full-precision
    weight at once, the memory quantizing saves."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return F.linear(x, layer.weight)

    @staticmethod
    def backward(ctx, grad):
        return grad.matmul(ctx.layer.weight), None


class QuantizedLinear(nn.Linear):
    """A Linear whose frozen weight is stored quantized (`codes`, `scales`) and read
    dequantized through `weight`."""

    scheme: str
    codes: torch.Tensor
    scales: torch.Tensor

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The base weight in the model dtype: a fresh tensor on every read, never a parameter."""
        if self.scheme == "int8":
            return dequantize_int8(self.codes, self.scales)
        return dequantize_nf4(self.codes, self.scales, (self.out_features, self.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _FrozenQuantizedMatmul.apply(x, self)
        return y if self.bias is None else y + self.bias

    def store(self, weight: torch.Tensor, scheme: str) -> None:
        """(Re)quantizes `weight` into this layer's codes and scales."""
        self.scheme = scheme
        codes, scales = _QUANTIZE[scheme](weight)
        # Not persistent: state_dict carries the dequantized weight instead (below).
        self.register_buffer("codes", codes, persistent=False)
        self.register_buffer("scales", scales, persistent=False)

    def share_storage(self, other: QuantizedLinear) -> None:
        """Takes over another quantized layer's storage and bias (the same tensors)."""
        self.in_features, self.out_features, self.scheme = other.in_features, other.out_features, other.scheme
        self.register_buffer("codes", other.codes, persistent=False)
        self.register_buffer("scales", other.scales, persistent=False)
        self.bias = other.bias

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # Saving and export read Hugging Face names: the base weight goes out dequantized.
        destination[prefix + "weight"] = self.weight
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        key = prefix + "weight"
        if key not in state_dict:
            missing_keys.append(key)
        elif tuple(state_dict[key].shape) != (self.out_features, self.in_features):
            error_msgs.append(
                f"size mismatch for {key}: copying a param with shape {tuple(state_dict[key].shape)}, "
                f"the shape in current model is {(self.out_features, self.in_features)}."
            )
        else:
            self.store(state_dict[key].to(device=self.scales.device, dtype=self.scales.dtype), self.scheme)
        rest = {k: v for k, v in state_dict.items() if k != key}
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scheme={self.scheme}"


class QuantizedLoRALinear(LoRALinear, QuantizedLinear):
    """LoRA over a quantized base: LoRALinear's forward calls QuantizedLinear's for the base."""

    def take_base(self, base: QuantizedLinear) -> tuple[torch.device, torch.dtype]:
        self.share_storage(base)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        return self.scales.device, self.scales.dtype

    def without_lora(self) -> QuantizedLinear:
        plain = QuantizedLinear.__new__(QuantizedLinear)
        nn.Module.__init__(plain)
        plain.share_storage(self)
        return plain.train(self.training)


QuantizedLinear.lora_class = QuantizedLoRALinear  # what lora.apply_lora wraps a quantized base in


# -- models ----------------------------------------------------------------------------------


def quantize_base(model: nn.Module, scheme: str) -> list[str]:
    """Quantizes the weight of every decoder-layer projection, plain or with LoRA, in place:
    adapters, their optimizer state and the layers' modes carry over. Returns the quantized
    modules' names."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    current = quantization(model)
    if current is not None:
        raise ValueError(f"the model is already quantized ({current}): load it again to change the scheme")
    done = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if name not in model.adapter_targets or type(child) not in (nn.Linear, LoRALinear):
                continue
            weight = child.weight
            del child.weight  # drops the parameter: only the codes stay resident
            child.__class__ = QuantizedLoRALinear if isinstance(child, LoRALinear) else QuantizedLinear
            child.store(weight, scheme)
            done.append(f"{parent_name}.{name}")
    return done


def quantization(model: nn.Module) -> str | None:
    """The scheme the model's base weights are stored in, or None when they are not quantized."""
    return next((m.scheme for m in model.modules() if isinstance(m, QuantizedLinear)), None)


def memory_bytes(model: nn.Module) -> dict[str, int]:
    """What the model's tensors occupy, for the status op: "stored", its parameters and
    buffers as held now (quantized weights at their packed size), and "fp32", the same model
    unquantized in fp32. Tied tensors count once."""
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    storage = {id(t) for m in quantized for t in (m.codes, m.scales)}
    params, buffers = list(model.parameters()), list(model.buffers())
    stored = sum(t.numel() * t.element_size() for t in params + buffers)
    fp32 = 4 * (sum(p.numel() for p in params) + sum(m.in_features * m.out_features for m in quantized))
    fp32 += sum(b.numel() * b.element_size() for b in buffers if id(b) not in storage)
    return {"stored": stored, "fp32": fp32}
