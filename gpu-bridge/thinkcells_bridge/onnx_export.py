"""ONNX export of a (merged) decoder: input_ids [batch, sequence] int64 → logits
[batch, sequence, vocab] float32, with dynamic batch and sequence axes and no KV cache.

model.py's forward is written for the bridge's own loops: it chunks attention rows by a size
computed in Python, keeps a RoPE table it grows on demand, and hands one-token decode steps
to C code. Traced, those Python decisions would freeze into the graph (a chunk loop unrolled
for the example batch, a table sized for the example length). `TraceableForward` computes the
same function with the same operations in the same order (RMSNorm in fp32, rotate-half RoPE
from the same tables, grouped-query attention with queries grouped under their KV head,
softmax in fp32), minus those decisions: every shape comes from the input.

Each row is one unpadded sequence (no attention mask input): batch prompts of equal length,
or one at a time. Positions run 0..sequence-1 and must stay within max_position_embeddings
(the RoPE table is baked in at that length).
"""

from __future__ import annotations

import math
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .environment import protocol_schema, require
from .model import CausalLM, rope_tables

_OPSETS = protocol_schema()["onnx_opsets"]  # declared in protocol.ts
DEFAULT_OPSET = _OPSETS["default"]
OPSETS = range(_OPSETS["min"], _OPSETS["max"] + 1)


class OnnxExportError(ValueError):
    pass


def check_exportable(model) -> None:
    """TraceableForward spells out Llama's math only: refuse the rest before any file is written."""
    config = model.config
    if model.backend != "native" or not config.llama_shaped:
        raise OnnxExportError(
            f"ONNX export covers Llama-shaped native models (llama, qwen2, mistral without a sliding window); "
            f"this {config.model_type} model ({model.backend}) is not one: export it without onnx and convert the "
            f"Hugging Face directory with a tool made for it (optimum, transformers.js' converter)"
        )


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """model.apply_rope with the roll spelled as slices: roll(x, half) == cat(x[half:], x[:half])
    for an even head_dim, the same values moved the same way."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * signed_sin


class TraceableForward(nn.Module):
    """logits = model(input_ids) for unpadded rows, traceable with dynamic shapes."""

    def __init__(self, model: CausalLM):
        super().__init__()
        config = model.config
        if config.head_dim % 2:
            raise OnnxExportError(f"head_dim {config.head_dim} is odd; RoPE needs an even one")
        self.model = model
        # [positions, 2, head_dim]: cos and signed sin, as CausalLM.rope builds them.
        self.register_buffer(
            "rope", rope_tables(config, config.max_position_embeddings, model.output_weight().device), persistent=False
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        model, config = self.model, self.model.config
        h, kv, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        g = h // kv
        x = model.model.embed_tokens(input_ids)
        b, t = input_ids.shape[0], input_ids.shape[1]
        table = self.rope[:t].to(x.dtype)
        cos, sin = table[None, :, None, 0], table[None, :, None, 1]  # [1, t, 1, d]
        slots = torch.arange(t, device=input_ids.device)
        allowed = slots[None, :] <= slots[:, None]  # query i sees keys 0..i
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~allowed, torch.finfo(x.dtype).min
        )
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            y = layer.input_layernorm(x)
            q = _rotate(attn.q_proj(y).view(b, t, h, d), cos, sin).transpose(1, 2)  # [b, h, t, d]
            k = _rotate(attn.k_proj(y).view(b, t, kv, d), cos, sin).transpose(1, 2)  # [b, kv, t, d]
            v = attn.v_proj(y).view(b, t, kv, d).transpose(1, 2)
            # Query heads grouped under their KV head (model.attention): K and V never repeated.
            qg = (q * (1.0 / math.sqrt(d))).reshape(b, kv, g * t, d)
            scores = torch.matmul(qg, k.transpose(-1, -2)).view(b, kv, g, t, t) + mask
            probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            out = torch.matmul(probs.view(b, kv, g * t, t), v).view(b, h, t, d)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, t, h * d))
            y = layer.post_attention_layernorm(x)
            x = x + mlp.down_proj(F.silu(mlp.gate_proj(y)) * mlp.up_proj(y))
        return F.linear(model.model.norm(x), model.output_weight())


def reference_logits(model: CausalLM, input_ids: torch.Tensor) -> torch.Tensor:
    """The bridge's own forward, for comparing against the traceable one."""
    b, t = input_ids.shape
    positions = torch.arange(t)[None].expand(b, -1)
    return model.logits(model.hidden_states(input_ids, positions, torch.zeros(b, dtype=torch.long)))


def plain_fp32_model(config, weights: dict[str, torch.Tensor]) -> CausalLM:
    """A fresh CausalLM on CPU in fp32 holding `weights` (HF names, adapters merged)."""
    model = CausalLM(config)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.float().eval()


def export_onnx(model: CausalLM, path: str, opset: int = DEFAULT_OPSET) -> dict:
    """Traces `model` (a plain CausalLM: no adapters, no quantized layers; see
    plain_fp32_model) to `path`, written atomically and checked with onnx.checker. Returns
    {path, opset, bytes, max_abs_diff}: the last compares the traced module with the bridge's
    forward on the example input."""
    if opset not in OPSETS:
        raise OnnxExportError(f"opset {opset} is not supported; use {OPSETS.start}..{OPSETS.stop - 1}")
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    import onnx

    config = model.config
    wrapper = TraceableForward(model).eval()
    # Batch 2 and several positions: a size-1 example axis can get specialised away.
    length = min(5, config.max_position_embeddings)
    example = (torch.arange(2 * length, dtype=torch.long).view(2, length) * 7 + 3) % config.vocab_size
    with torch.no_grad():
        reference = reference_logits(model, example)
        diff = float((wrapper(example) - reference).abs().max())
    scale = 1e-4 * max(1.0, float(reference.abs().max()))
    if not diff <= scale:
        raise OnnxExportError(
            f"the traceable forward differs from the model's by {diff:g} (limit {scale:g}); not exporting"
        )

    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes: every shape here is traced
            # torch.export-based exporter (the TorchScript one is deprecated in torch 2.x).
            dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=config.max_position_embeddings)}
            program = torch.onnx.export(
                wrapper,
                (example,),
                dynamo=True,
                input_names=["input_ids"],
                output_names=["logits"],
                dynamic_shapes=(dims,),
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
            program.save(tmp)
        onnx.checker.check_model(tmp)  # by path: works past protobuf's 2 GB as well
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"path": path, "opset": opset, "bytes": os.path.getsize(path), "max_abs_diff": diff}
