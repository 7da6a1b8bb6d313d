"""A Llama-family decoder in plain PyTorch: Llama 2/3, Mistral, Qwen2/2.5.

Parameter names follow Hugging Face's (`model.layers.0.self_attn.q_proj.weight`, ...), so a
Hugging Face state dict loads as is. One forward serves prefill, decode with a KV cache and
teacher-forced scoring. While sampling on CPU in fp32, one-token decode steps go to the same
math written in C (native/decode.c, through native_kernels.decode_step): per-op overhead, not
arithmetic, limits a small model's decode speed in eager PyTorch.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from . import native_kernels
from .lora import merged_weight
from .rope_scaling import RopeScaling, inv_freq_and_attention_factor, parse_rope_scaling

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
# The decoder layers' projections (children of self_attn and mlp): what LoRA and quantization act on.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ModelConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    attention_bias: bool
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    rope_scaling: RopeScaling | None = None  # context extension; None is plain RoPE

    @staticmethod
    def from_hf(config: dict, source: str = "config.json") -> "ModelConfig":
        model_type = config.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ModelConfigError(
                f"{source}: model_type {model_type!r} is not supported; "
                f"expected one of {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        try:
            rope_scaling = parse_rope_scaling(config, source)
        except ValueError as e:
            raise ModelConfigError(str(e)) from None
        # transformers 5 writes rope_theta inside rope_parameters.
        rope_theta = config.get("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta", 10000.0))

        def integer(key: str, default: int | None = None) -> int:
            """config[key] as a positive integer; absent or null gives `default` (None: required)."""
            value = config.get(key)
            if value is None:
                if default is None:
                    raise ModelConfigError(f"{source}: field {key!r} is missing")
                return default
            # bool is an int to Python, not to a config.
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"{source}: {key} is {value!r}; expected a positive integer")
            return value

        def number(key: str, value) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ModelConfigError(f"{source}: {key} is {value!r}; expected a positive number")
            return float(value)

        def token_ids(key: str) -> tuple[int, ...]:
            value = config.get(key)
            ids = [] if value is None else value if isinstance(value, list) else [value]
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
                raise ModelConfigError(f"{source}: {key} is {value!r}; expected integer token ids (one, a list, or null)")
            return tuple(ids)

        heads = integer("num_attention_heads")
        hidden = integer("hidden_size")
        kv_heads = integer("num_key_value_heads", heads)
        if heads % kv_heads:
            raise ModelConfigError(f"{source}: num_key_value_heads is {kv_heads}, which does not divide num_attention_heads ({heads})")
        if config.get("head_dim") is None and hidden % heads:
            raise ModelConfigError(
                f"{source}: hidden_size is {hidden}, not divisible by num_attention_heads ({heads}), and no head_dim is given"
            )
        head_dim = integer("head_dim", hidden // heads)
        if head_dim % 2:
            derived = "" if config.get("head_dim") is not None else " (hidden_size / num_attention_heads)"
            raise ModelConfigError(f"{source}: head_dim is {head_dim}{derived}; expected an even number (RoPE rotates pairs)")
        bos = token_ids("bos_token_id")
        if len(bos) > 1:
            raise ModelConfigError(f"{source}: bos_token_id is {config['bos_token_id']!r}; expected one token id or null")
        return ModelConfig(
            model_type=model_type,
            vocab_size=integer("vocab_size"),
            hidden_size=hidden,
            intermediate_size=integer("intermediate_size"),
            num_hidden_layers=integer("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            max_position_embeddings=integer("max_position_embeddings", 2048),
            rms_norm_eps=number("rms_norm_eps", config.get("rms_norm_eps", 1e-6)),
            rope_theta=number("rope_theta", rope_theta),
            # Llama defaults to untied; Qwen2 configs say so explicitly.
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            # Qwen2 always has q/k/v bias; Llama exposes it as `attention_bias`.
            attention_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)),
            bos_token_id=bos[0] if bos else None,
            eos_token_ids=token_ids("eos_token_id"),
            rope_scaling=rope_scaling,
        )

    def parameter_counts(self) -> dict[str, int]:
        """The parameters CausalLM(self) has, by the config.json fields that size them (keys
        name them), known before anything is allocated: loading refuses what cannot fit."""
        h, q, kv = self.hidden_size, self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        attention = h * (q + 2 * kv) + q * h + ((q + 2 * kv) if self.attention_bias else 0)
        layer = attention + 3 * h * self.intermediate_size + 2 * h  # + MLP and two norms
        return {
            f"vocab_size {self.vocab_size} × hidden_size {h}": self.vocab_size * h * (1 if self.tie_word_embeddings else 2),
            f"num_hidden_layers {self.num_hidden_layers} × layers of hidden_size {h}, intermediate_size "
            f"{self.intermediate_size}": self.num_hidden_layers * layer,
            f"hidden_size {h} (final norm)": h,
        }


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in fp32 as the reference implementations do, then cast back.
        xf = x if x.dtype == torch.float32 else x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * (xf if x.dtype == torch.float32 else xf.to(x.dtype))


def rope_tables(config: ModelConfig, length: int, device) -> torch.Tensor:
    """fp32 [length, 2, head_dim]: cos, and sin with its first half negated, for positions
    0..length-1. With the sign folded in, rotate-half is a roll: see apply_rope. Under
    dynamic NTK scaling the frequencies themselves depend on `length`."""
    half = config.head_dim // 2
    inv_freq, attention_factor = inv_freq_and_attention_factor(config.head_dim, config.rope_theta, config.rope_scaling, length, device)
    freqs = torch.outer(torch.arange(length, dtype=torch.float64, device=device), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    sin[:, :half].neg_()
    if attention_factor != 1.0:
        # YaRN's attention temperature, folded into cos and sin as Hugging Face does: q and k
        # both carry it, so every consumer of the table (the native step too) applies it.
        cos.mul_(attention_factor)
        sin.mul_(attention_factor)
    return torch.stack((cos, sin), dim=1).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Hugging Face's rotate-half RoPE, x * cos + rotate_half(x) * sin, where
    rotate_half(x) = cat(-x2, x1) = roll(x, half) * (-1 on the first half).
    x: [B, T, heads, D]; cos, signed_sin: [B, T, 1, D]."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class KVCache:
    """Preallocated keys/values for every layer: decoding writes in place, never concatenates.
    Stored slots-last, [batch, kv_head, head_dim, slot] per layer, the layout the native decode
    step vectorizes over. Row b's first `start[b]` slots are left padding."""

    def __init__(self, config: ModelConfig, start: torch.Tensor, capacity: int, dtype):
        batch = start.shape[0]
        shape = (batch, config.num_key_value_heads, config.head_dim, capacity)
        self.k = [torch.zeros(shape, device=start.device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, device=start.device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.start = start
        self.length = 0
        self.capacity = capacity
        self.native_pointers = None  # set by native_kernels.decode_step


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=False)
        self.inference: InferenceWeights | None = None  # see inference_weights

    def forward(self, x, cos, sin, mask_fn, cache: KVCache | None, layer: int):
        b, t, _ = x.shape
        h, kv, d = self.n_heads, self.n_kv, self.head_dim
        fast = self.inference
        if fast is None:
            qk = torch.cat((self.q_proj(x), self.k_proj(x)), dim=-1)
            v = self.v_proj(x).view(b, t, kv, d)
        else:
            qkv = torch.matmul(x, fast.qkv_t) if fast.qkv_bias is None else torch.addmm(fast.qkv_bias, x.view(b * t, -1), fast.qkv_t).view(b, t, -1)
            qk, v = qkv[..., : (h + kv) * d], qkv[..., (h + kv) * d :].view(b, t, kv, d)
        # Queries and keys rotate together: one set of RoPE ops instead of two.
        qk = apply_rope(qk.view(b, t, h + kv, d), cos, sin)
        q, k = qk[:, :, :h], qk[:, :, h:]
        if cache is not None:
            kt, vt, end = cache.k[layer], cache.v[layer], cache.length + t
            kt.narrow(3, cache.length, t).copy_(k.permute(0, 2, 3, 1))
            vt.narrow(3, cache.length, t).copy_(v.permute(0, 2, 3, 1))
            k, v = kt.narrow(3, 0, end).transpose(2, 3), vt.narrow(3, 0, end).transpose(2, 3)
        else:
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        out = attention(q.transpose(1, 2), k, v, mask_fn()).transpose(1, 2).reshape(b, t, h * d)
        return self.o_proj(out) if fast is None else torch.matmul(out, fast.o_t)


def attention(q, k, v, mask):
    """Grouped-query attention through torch's fused SDPA kernels. q: [B, H, T, D]; k, v:
    [B, KV, S, D]; mask: additive [B, 1, T, S]."""
    g = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1), attn_mask=mask)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.inference: InferenceWeights | None = None  # see inference_weights

    def forward(self, x):
        fast = self.inference
        if fast is None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = torch.matmul(x, fast.gate_up_t).chunk(2, dim=-1)
        return torch.matmul(F.silu(gate) * up, fast.down_t)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, mask_fn, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask_fn, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class CausalLM(nn.Module):
    """The native implementation of language_model.LanguageModel."""

    backend = "native"
    adapter_targets = PROJECTIONS

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._rope: torch.Tensor | None = None
        self.head_t: torch.Tensor | None = None  # see inference_weights
        # PPO's critic: a scalar per position from the final hidden state (add_value_head).
        self.value_head: nn.Linear | None = None

    def add_value_head(self) -> None:
        """A fresh trainable value head (zero-initialised: V = 0 until trained)."""
        weight = self.output_weight()
        self.value_head = nn.Linear(self.config.hidden_size, 1).to(device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.value_head is None:
            raise ValueError("the model has no value head (add_value_head first)")
        return self.value_head(hidden).squeeze(-1)

    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def rope(self, positions: torch.Tensor, need: int, dtype) -> torch.Tensor:
        """cos and signed sin for per-row positions [B, T] → [B, T, 2, D]; `need` bounds the
        positions (an upper bound the caller knows, so no device sync here)."""
        limit, table = self.config.max_position_embeddings, self._rope
        # Dynamic NTK frequencies depend on the table's length: a table grown past the limit
        # for a long sequence is dropped once sequences fit again, as Hugging Face resets it.
        dynamic = self.config.rope_scaling is not None and self.config.rope_scaling.type == "dynamic"
        if table is None or table.shape[0] < need or table.device != positions.device or (dynamic and need <= limit < table.shape[0]):
            self._rope = rope_tables(self.config, max(need, limit), positions.device)
        table = self._rope[positions]
        return table if dtype == torch.float32 else table.to(dtype)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        pad: torch.Tensor,
        cache: KVCache | None = None,
        checkpoint_layers: bool = False,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, T, hidden]. Row b's first `pad[b]` tokens (or cache
        slots) are left padding that nothing attends to; right padding needs no mask.
        checkpoint_layers: keep only each layer's input for backward and recompute the rest
        (gradient checkpointing: activation memory of one layer instead of all)."""
        x = self.model.embed_tokens(input_ids)
        past = 0 if cache is None else cache.length
        # A position never exceeds its cache slot (left padding only lowers it).
        rope = self.rope(positions, past + input_ids.shape[1], x.dtype)
        if cache is not None and input_ids.shape[1] == 1 and native_kernels.decode_step(self, x, rope, cache):
            cache.length += 1
            return self.model.norm(x)
        cos, sin = rope[:, :, None, 0], rope[:, :, None, 1]
        mask: list[torch.Tensor] = []

        def mask_fn() -> torch.Tensor:
            # Built once per forward, and only if some layer has no faster path.
            if not mask:
                mask.append(causal_mask(pad, input_ids.shape[1], past, x.dtype))
            return mask[0]

        checkpoint_layers = checkpoint_layers and torch.is_grad_enabled()
        for i, layer in enumerate(self.model.layers):
            if checkpoint_layers:
                # It restores the random state, so dropout draws the same masks when recomputing.
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask_fn, cache, i, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask_fn, cache, i)
        if cache is not None:
            cache.length += input_ids.shape[1]
        return self.model.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head_t is not None:
            return torch.matmul(hidden, self.head_t)
        return F.linear(hidden, self.output_weight())

    def new_cache(self, start: torch.Tensor, capacity: int, dtype) -> "KVCache":
        return KVCache(self.config, start, capacity, dtype)

    def sampling_mode(self):
        return inference_weights(self)


@dataclass
class InferenceWeights:
    """Projection weights laid out for a no-grad loop: q/k/v and gate/up concatenated so each
    runs as one matmul, and every matrix stored transposed, [in, out], which small CPU matmuls
    run about twice as fast as a Linear's [out, in]."""

    qkv_t: torch.Tensor | None = None
    qkv_bias: torch.Tensor | None = None
    o_t: torch.Tensor | None = None
    gate_up_t: torch.Tensor | None = None
    down_t: torch.Tensor | None = None


@contextmanager
def inference_weights(model: CausalLM):
    """For sampling, whose weights cannot change while it runs: fewer, larger, better-shaped
    ops are what CPU decoding speed comes from. The copies exist only inside the block, so
    they never go stale."""
    layers = list(model.model.layers)

    def t(*linears: nn.Linear) -> torch.Tensor:
        # LoRA adapters that are on are merged in: sampling sees the policy being trained.
        return torch.cat([merged_weight(linear) for linear in linears]).t().contiguous().detach()

    for layer in layers:
        attn, mlp = layer.self_attn, layer.mlp
        bias = None if attn.q_proj.bias is None else torch.cat((attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias)).detach()
        attn.inference = InferenceWeights(qkv_t=t(attn.q_proj, attn.k_proj, attn.v_proj), qkv_bias=bias, o_t=t(attn.o_proj))
        mlp.inference = InferenceWeights(gate_up_t=t(mlp.gate_proj, mlp.up_proj), down_t=t(mlp.down_proj))
    model.head_t = model.output_weight().t().contiguous().detach()
    try:
        yield model
    finally:
        for layer in layers:
            layer.self_attn.inference = None
            layer.mlp.inference = None
        model.head_t = None


def causal_mask(pad: torch.Tensor, t: int, past: int, dtype) -> torch.Tensor:
    """Additive mask [B, 1, t, past + t] for rows left-padded by `pad` tokens: a query at cache
    slot past+i sees slots pad..past+i."""
    s = past + t
    slots = torch.arange(s, device=pad.device)
    query_slots = torch.arange(past, s, device=pad.device)
    allowed = (slots[None, None, :] <= query_slots[None, :, None]) & (slots[None, None, :] >= pad[:, None, None])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=pad.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
