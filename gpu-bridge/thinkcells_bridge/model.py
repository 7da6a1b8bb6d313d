"""The native decoder in plain PyTorch: Llama 2/3, Mistral, Qwen2/2.5, Qwen3, Gemma 2 and 3.

One set of modules, with each family's departures from Llama switched on by its ModelConfig
(model_config.py): q/k norms (Qwen3, Gemma 3), Gemma's (1 + w) norms, scaled embeddings, norms
after attention and MLP, soft-capping and attention scale, sliding-window layers (Mistral,
Gemma) with their own RoPE base (Gemma 3).

Parameter names follow Hugging Face's (`model.layers.0.self_attn.q_proj.weight`, ...), so a
Hugging Face state dict loads as is. One forward serves prefill, decode with a KV cache and
teacher-forced scoring. The fast sampling paths sit beside this code, not in it: sampling runs
one-token steps of Llama-shaped models in C (native_kernels.NativeDecoder), and of the others
through a fixed-shape step over these modules (static_decode.decode_step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .language_model import ValueHead
from .model_config import FULL, SUPPORTED_MODEL_TYPES, ModelConfig, ModelConfigError  # noqa: F401 (re-exported)
from .rope_scaling import inv_freq_and_attention_factor

# The decoder layers' projections (children of self_attn and mlp): what LoRA and quantization act on.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class RMSNorm(nn.Module):
    """Llama's: normalize in fp32, cast back, scale by w. Gemma's (offset=True): scale by
    (1 + w) in fp32, then cast: the stored w is centred on 0."""

    def __init__(self, dim: int, eps: float, offset: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim) if offset else torch.ones(dim))
        self.eps = eps
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x if x.dtype == torch.float32 else x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (xf * (1.0 + self.weight.float())).to(x.dtype)
        return self.weight * (xf if x.dtype == torch.float32 else xf.to(x.dtype))


def rope_tables(config: ModelConfig, length: int, device, layer_type: str = FULL) -> torch.Tensor:
    """fp32 [length, 2, head_dim]: cos, and sin with its first half negated, for positions
    0..length-1, for one kind of layer (Gemma 3's sliding layers have a base of their own).
    With the sign folded in, rotate-half is a roll: see apply_rope. Under dynamic NTK scaling
    the frequencies themselves depend on `length`."""
    half = config.head_dim // 2
    theta, scaling = config.rope_for(layer_type)
    inv_freq, attention_factor = inv_freq_and_attention_factor(config.head_dim, theta, scaling, length, device)
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

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes k, v [B, t, kv_head, D] at slots length..length+t of `layer` (hidden_states
        advances `length` after the last layer) and returns the keys and values of slots
        0..length+t as [B, kv_head, slot, D] views."""
        kt, vt, t = self.k[layer], self.v[layer], k.shape[1]
        kt.narrow(3, self.length, t).copy_(k.permute(0, 2, 3, 1))
        vt.narrow(3, self.length, t).copy_(v.permute(0, 2, 3, 1))
        end = self.length + t
        return kt.narrow(3, 0, end).transpose(2, 3), vt.narrow(3, 0, end).transpose(2, 3)

    def repeat_interleave(self, n: int) -> KVCache:
        """A cache of n copies of each row, copies adjacent (row r is a copy of row r // n): the
        prompt-major rows of n samples per prompt, from one prefill per prompt."""
        out = object.__new__(KVCache)
        out.k = [t.repeat_interleave(n, dim=0) for t in self.k]
        out.v = [t.repeat_interleave(n, dim=0) for t in self.v]
        out.start = self.start.repeat_interleave(n, dim=0)
        out.length, out.capacity = self.length, self.capacity
        return out


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.window = config.window(layer)
        self.scale = config.attention_scale
        self.softcap = config.attn_logit_softcapping
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.n_kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=config.o_bias)
        if config.qk_norm:
            # Per head, before RoPE: keeps attention logits bounded (Qwen3, Gemma 3).
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps, offset=config.gemma)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps, offset=config.gemma)

    def forward(self, x, cos, sin, mask_fn, cache: KVCache | None, layer: int):
        b, t, _ = x.shape
        h, kv, d = self.n_heads, self.n_kv, self.head_dim
        qk = torch.cat((self.q_proj(x), self.k_proj(x)), dim=-1).view(b, t, h + kv, d)
        v = self.v_proj(x).view(b, t, kv, d)
        if hasattr(self, "q_norm"):
            qk = torch.cat((self.q_norm(qk[:, :, :h]), self.k_norm(qk[:, :, h:])), dim=2)
        # Queries and keys rotate together: one set of RoPE ops instead of two.
        qk = apply_rope(qk, cos, sin)
        q, k = qk[:, :, :h], qk[:, :, h:]
        if cache is not None:
            # A KVCache, or static_decode's fixed-shape view of one.
            k, v = cache.append(layer, k, v)
        else:
            k, v = k.transpose(1, 2), v.transpose(1, 2)
        out = (
            attention(q.transpose(1, 2), k, v, mask_fn(self.window), self.scale, self.softcap)
            .transpose(1, 2)
            .reshape(b, t, h * d)
        )
        return self.o_proj(out)


def attention(q, k, v, mask, scale: float | None = None, softcap: float | None = None):
    """Grouped-query attention. q: [B, H, T, D]; k, v: [B, KV, S, D]; mask: additive
    [B, 1, T, S]; scale: None for D^-½. Through torch's fused SDPA kernels, except with
    soft-capping (Gemma 2: scores → cap · tanh(scores / cap) before the mask), which they lack,
    and for one query per row (decoding: one_query_attention)."""
    if q.shape[2] == 1:
        return one_query_attention(q, k, v, mask, scale, softcap)
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    if softcap is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = torch.matmul(q, k.transpose(2, 3)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    scores = torch.tanh(scores / softcap) * softcap + mask
    return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)


def one_query_attention(q, k, v, mask, scale: float | None = None, softcap: float | None = None):
    """attention() for one query per row (a decode step): two matmuls that read the keys and
    values where they are. The fused kernels would first copy them (repeated per query head and
    made contiguous), which for a KV cache stored slots-last costs more than the attention
    itself. The g query heads that share a kv head become g queries of it."""
    b, h, _, d = q.shape
    kv = k.shape[1]
    q = q.reshape(b, kv, h // kv, d)
    scores = torch.matmul(q, k.transpose(2, 3)) * (d**-0.5 if scale is None else scale)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v).reshape(b, h, 1, d)


ACTIVATION_FUNCTIONS = {"silu": F.silu, "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu}


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        bias = config.mlp_bias
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.act = ACTIVATION_FUNCTIONS[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=config.gemma)
        self.self_attn = Attention(config, layer)
        # Gemma names post_attention_layernorm the norm of attention's output, and normalizes
        # the MLP's input and output with two more; Llama's is the MLP's input norm.
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=config.gemma)
        if config.gemma:
            self.pre_feedforward_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=True)
            self.post_feedforward_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=True)
        self.mlp = MLP(config)
        self.sandwich = config.gemma

    def forward(self, x, cos, sin, mask_fn, cache, layer):
        if self.sandwich:
            x = x + self.post_attention_layernorm(
                self.self_attn(self.input_layernorm(x), cos, sin, mask_fn, cache, layer)
            )
            return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask_fn, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, offset=config.gemma)


class CausalLM(ValueHead, nn.Module):
    """The native implementation of language_model.LanguageModel."""

    backend = "native"
    adapter_targets = PROJECTIONS

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = (
            None if config.tie_word_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self._rope: dict[str, torch.Tensor] = {}  # a table per kind of layer (config.rope_kinds)
        # Gemma scales embeddings by √hidden, rounded to the model's dtype as transformers does.
        self.embed_scale = config.hidden_size**0.5 if config.gemma else None
        # PPO's critic: a scalar per position from the final hidden state (add_value_head).
        self.value_head: nn.Linear | None = None

    def output_weight(self) -> torch.Tensor:
        return self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def rope(self, positions: torch.Tensor, need: int, dtype, kind: str = FULL) -> torch.Tensor:
        """cos and signed sin for per-row positions [B, T] → [B, T, 2, D] for one kind of
        layer; `need` bounds the positions (an upper bound the caller knows, so no device sync here)."""
        limit, table = self.config.max_position_embeddings, self._rope.get(kind)
        # Dynamic NTK frequencies depend on the table's length: a table grown past the limit
        # for a long sequence is dropped once sequences fit again, as Hugging Face resets it.
        scaling = self.config.rope_for(kind)[1]
        dynamic = scaling is not None and scaling.type == "dynamic"
        if (
            table is None
            or table.shape[0] < need
            or table.device != positions.device
            or (dynamic and need <= limit < table.shape[0])
        ):
            table = self._rope[kind] = rope_tables(self.config, max(need, limit), positions.device, kind)
        table = table[positions]
        return table if dtype == torch.float32 else table.to(dtype)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        pad: torch.Tensor,
        cache: KVCache | None = None,
        checkpoint_layers: bool = False,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, T, hidden]. Row b's first `pad[b]` tokens (or cache
        slots) are left padding that nothing attends to; right padding needs no mask.
        checkpoint_layers: keep only each layer's input for backward and recompute the rest
        (gradient checkpointing: activation memory of one layer instead of all).
        segments: [B, T] the packed example each token belongs to (no cache): a token attends
        only to its own example's tokens (the caller restarts `positions` per example)."""
        if segments is not None and cache is not None:
            raise ValueError("segments: packed examples are for training without a cache")
        config = self.config
        x = self.model.embed_tokens(input_ids)
        if self.embed_scale is not None:
            x = x * torch.tensor(self.embed_scale, dtype=x.dtype)
        past = 0 if cache is None else cache.length
        # A position never exceeds its cache slot (left padding only lowers it).
        ropes = {kind: self.rope(positions, past + input_ids.shape[1], x.dtype, kind) for kind in config.rope_kinds}
        tables = {kind: (rope[:, :, None, 0], rope[:, :, None, 1]) for kind, rope in ropes.items()}
        masks: dict[int | None, torch.Tensor] = {}

        def mask_fn(window: int | None) -> torch.Tensor:
            # Built once per forward and window size.
            if window not in masks:
                masks[window] = causal_mask(pad, input_ids.shape[1], past, x.dtype, window, segments)
            return masks[window]

        checkpoint_layers = checkpoint_layers and torch.is_grad_enabled()
        for i, layer in enumerate(self.model.layers):
            cos, sin = tables[config.rope_kind(i)]
            if checkpoint_layers:
                # It restores the random state, so dropout draws the same masks when recomputing.
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask_fn, cache, i, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask_fn, cache, i)
        if cache is not None:
            cache.length += input_ids.shape[1]
        return self.model.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = F.linear(hidden, self.output_weight())
        cap = self.config.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def new_cache(self, start: torch.Tensor, capacity: int, dtype) -> KVCache:
        return KVCache(self.config, start, capacity, dtype)


def causal_mask(
    pad: torch.Tensor, t: int, past: int, dtype, window: int | None = None, segments: torch.Tensor | None = None
) -> torch.Tensor:
    """Additive mask [B, 1, t, past + t] for rows left-padded by `pad` tokens: a query at cache
    slot past+i sees slots pad..past+i, and with a sliding window only the last `window` of them.
    segments [B, t] (packed examples, past = 0): only the slots of the query's own example."""
    s = past + t
    slots = torch.arange(s, device=pad.device)[None, None, :]
    query_slots = torch.arange(past, s, device=pad.device)[None, :, None]
    allowed = (slots <= query_slots) & (slots >= pad[:, None, None])
    if window is not None:
        allowed &= slots > query_slots - window
    if segments is not None:
        allowed = allowed & (segments[:, :, None] == segments[:, None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=pad.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)
