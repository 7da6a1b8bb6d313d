"""RoPE context extension: the `rope_scaling` block of a Hugging Face config.json, and the
rotary frequencies it implies.

The four kinds Llama-family checkpoints use, with the semantics of transformers'
modeling_rope_utils: linear position interpolation, dynamic NTK, YaRN and Llama 3.1's
frequency-dependent rule. Frequencies are float64 (the model's tables cast to fp32 at the end).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

SCALING_TYPES = ("linear", "dynamic", "yarn", "llama3")
_REQUIRED = object()


@dataclass(frozen=True)
class RopeScaling:
    type: str  # one of SCALING_TYPES
    factor: float
    # The context length the model was pretrained for, which the scaling stretches.
    original_max_position_embeddings: int
    # YaRN: dimensions turning more than beta_fast times over the original context keep their
    # frequency (extrapolation), fewer than beta_slow times are divided by factor
    # (interpolation); a linear ramp blends those between.
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    # YaRN: multiplies cos and sin. None: 0.1 ln(factor) + 1, or DeepSeek's mscale ratio.
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    # YaRN: round the ramp's ends out to whole dimensions (gpt-oss turns this off).
    truncate: bool = True
    # llama3: wavelengths above original/low_freq_factor are divided by factor, those below
    # original/high_freq_factor kept, the ones between blended.
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0


def parse_rope_scaling(config: dict, source: str = "config.json") -> RopeScaling | None:
    """The scaling a Hugging Face config dict asks for, or None for plain RoPE. Reads
    `rope_scaling` ({"type"|"rope_type": ..., "factor": ..., ...}) or, as transformers 5
    writes it, `rope_parameters` (per layer type for Gemma 3: its full_attention block). Raises ValueError naming `source` and the bad field."""
    key = "rope_scaling" if config.get("rope_scaling") else "rope_parameters"
    block = config.get(key)
    if isinstance(block, dict) and "full_attention" in block:
        # transformers 5 keys Gemma 3's by layer type; scaling stretches the global layers.
        key, block = f"{key}.full_attention", block["full_attention"]
    if not block:
        return None
    if not isinstance(block, dict):
        raise ValueError(f"{source}: {key} must be an object, got {block!r}")
    kind = block.get("rope_type", block.get("type"))
    if kind is None:
        raise ValueError(f"{source}: {key} field 'rope_type' (or 'type') is missing")
    if kind == "default":
        return None
    if kind not in SCALING_TYPES:
        raise ValueError(f"{source}: {key} type {kind!r} is not supported; expected one of {', '.join(SCALING_TYPES)}")

    def number(name: str, default=_REQUIRED, *, minimum: float = 0.0, strict: bool = True, integer: bool = False):
        value = block.get(name)
        if value is None:
            if default is _REQUIRED:
                raise ValueError(f"{source}: {key} field {name!r} is missing (needed by type {kind!r})")
            return default
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > minimum if strict else value >= minimum) and (not integer or value == int(value))
        if not ok:
            expected = "an integer" if integer else "a number"
            raise ValueError(
                f"{source}: {key} field {name!r} must be {expected} {'>' if strict else '>='} {minimum:g}, got {value!r}"
            )
        return int(value) if integer else float(value)

    max_positions = int(config.get("max_position_embeddings", 2048))  # from_hf's default
    if kind == "dynamic":
        # transformers' dynamic NTK measures from max_position_embeddings, even when the
        # block names an original length.
        original = max_positions
    else:
        original = number("original_max_position_embeddings", max_positions, integer=True)
    scaling = RopeScaling(
        type=kind, factor=number("factor", minimum=1.0, strict=False), original_max_position_embeddings=original
    )
    if kind == "yarn":
        truncate = block.get("truncate", True)
        if not isinstance(truncate, bool):
            raise ValueError(f"{source}: {key} field 'truncate' must be true or false, got {truncate!r}")
        scaling = dataclasses.replace(
            scaling,
            beta_fast=number("beta_fast", 32.0),
            beta_slow=number("beta_slow", 1.0),
            attention_factor=number("attention_factor", None),
            mscale=number("mscale", None),
            mscale_all_dim=number("mscale_all_dim", None),
            truncate=truncate,
        )
        if scaling.beta_fast <= scaling.beta_slow:
            raise ValueError(
                f"{source}: {key} field 'beta_fast' must exceed 'beta_slow', got {scaling.beta_fast:g} and {scaling.beta_slow:g}"
            )
    elif kind == "llama3":
        scaling = dataclasses.replace(
            scaling, low_freq_factor=number("low_freq_factor"), high_freq_factor=number("high_freq_factor")
        )
        if scaling.high_freq_factor <= scaling.low_freq_factor:
            raise ValueError(
                f"{source}: {key} field 'high_freq_factor' must exceed 'low_freq_factor', "
                f"got {scaling.high_freq_factor:g} and {scaling.low_freq_factor:g}"
            )
    return scaling


def _mscale(factor: float, mscale: float = 1.0) -> float:
    # YaRN's attention temperature, sqrt(1/t) = 0.1 ln(s) + 1.
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def inv_freq_and_attention_factor(
    head_dim: int, theta: float, scaling: RopeScaling | None, seq_len: int | None = None, device=None
) -> tuple[torch.Tensor, float]:
    """float64 inverse frequencies [head_dim / 2] and the factor cos and sin are multiplied by.
    `seq_len` matters to dynamic NTK only: the length the frequencies must cover."""
    half = head_dim // 2
    exponents = torch.arange(0, half, dtype=torch.float64, device=device) / half  # 2i / head_dim
    if scaling is None:
        return 1.0 / (theta**exponents), 1.0
    factor, original = scaling.factor, scaling.original_max_position_embeddings
    if scaling.type == "dynamic":
        # NTK-aware: a larger base stretches the low frequencies to span seq_len and barely
        # moves the high ones. Up to the original length this is plain RoPE (the power is 1).
        seq = max(seq_len or 0, original)
        base = theta * ((factor * seq / original) - (factor - 1)) ** (head_dim / (head_dim - 2))
        return 1.0 / (base**exponents), 1.0
    inv_freq = 1.0 / (theta**exponents)
    if scaling.type == "linear":
        # Position interpolation: position p rotates as p / factor did.
        return inv_freq / factor, 1.0
    if scaling.type == "yarn":

        def correction_dim(rotations: float) -> float:
            # The dimension that turns `rotations` times over the original context.
            return head_dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

        low, high = correction_dim(scaling.beta_fast), correction_dim(scaling.beta_slow)
        if scaling.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, head_dim - 1)
        if low == high:
            high += 0.001  # as transformers does: no zero-width ramp
        ramp = ((torch.arange(half, dtype=torch.float64, device=device) - low) / (high - low)).clamp(0, 1)
        pos_freqs = theta**exponents
        extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
        inv_freq = interpolation * ramp + extrapolation * (1 - ramp)
        if scaling.attention_factor is not None:
            attention = scaling.attention_factor
        elif scaling.mscale and scaling.mscale_all_dim:
            attention = _mscale(factor, scaling.mscale) / _mscale(factor, scaling.mscale_all_dim)
        else:
            attention = _mscale(factor)
        return inv_freq, attention
    # llama3: high frequencies (short wavelengths) resolve local order and stay; low ones,
    # which never completed a turn in pretraining, are interpolated; a smooth blend between.
    wavelen = 2 * math.pi / inv_freq
    smooth = (original / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    kept = torch.where(wavelen < original / scaling.high_freq_factor, inv_freq, blended)
    return torch.where(wavelen > original / scaling.low_freq_factor, inv_freq / factor, kept), 1.0


def with_rope_scaling(config, type: str, factor: float | None = None, target_length: int | None = None):
    """A copy of the ModelConfig `config` stretched to `target_length` positions with `type`
    scaling: what loading a model for a longer context than its config.json does. factor
    defaults to target_length / max_position_embeddings, target_length to
    max_position_embeddings * factor; max_position_embeddings becomes target_length."""
    if type not in SCALING_TYPES:
        raise ValueError(f"rope scaling type {type!r} is not supported; expected one of {', '.join(SCALING_TYPES)}")
    if config.rope_scaling is not None:
        # Its frequencies are what the model was trained on: a second scaling on top would not be.
        raise ValueError(
            f"the model's config already sets {config.rope_scaling.type!r} rope scaling; it cannot take another"
        )
    original = config.max_position_embeddings
    if target_length is not None and (
        isinstance(target_length, bool) or not isinstance(target_length, int) or target_length < original
    ):
        raise ValueError(
            f"rope scaling target_length must be an integer >= max_position_embeddings ({original}), got {target_length!r}"
        )
    if factor is None:
        if target_length is None:
            raise ValueError("rope scaling needs a factor or a target_length")
        factor = target_length / original
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (1 <= factor < math.inf):
        raise ValueError(f"rope scaling factor must be a number >= 1, got {factor!r}")
    scaling = RopeScaling(type=type, factor=float(factor), original_max_position_embeddings=original)
    target = target_length if target_length is not None else int(original * factor)
    return dataclasses.replace(config, rope_scaling=scaling, max_position_embeddings=target)
