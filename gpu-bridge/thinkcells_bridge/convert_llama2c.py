"""Convert a llama2.c checkpoint (the legacy "version 0" .bin) to Hugging Face
Llama names, config, generation config and RoPE layout."""

import os
import struct

import numpy as np
import torch

from .hf_checkpoint import GENERATION_CONFIG, save_checkpoint, write_json

_HEADER = struct.Struct("<7i")
# llama2.c's tokenizer: 0 unk, 1 BOS, 2 EOS.
BOS, EOS = 1, 2
# llama2.c's newer export formats (version >= 1) start with this magic instead.
_MAGIC_AK42 = 0x616B3432


class Llama2cError(ValueError):
    """A llama2.c checkpoint is malformed or does not match its header."""


def _permute_rope(w, n_heads):
    """llama2.c rotates adjacent pairs (2i, 2i+1) of each head; HF's Llama rotates
    element i with i + head_dim/2. Reorder each head's output rows so the pairs
    become halves (the permutation of transformers' convert_llama_weights_to_hf)."""
    dim_out, dim_in = w.shape
    return w.view(n_heads, dim_out // n_heads // 2, 2, dim_in).transpose(1, 2).reshape(dim_out, dim_in)


def _read_header(path, f):
    raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise Llama2cError(f"{path}: {len(raw)} bytes, too short for the {_HEADER.size}-byte llama2.c header")
    if struct.unpack_from("<I", raw)[0] == _MAGIC_AK42:
        raise Llama2cError(f"{path}: versioned llama2.c export (magic 'ak42') is not supported; use the legacy format")
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = _HEADER.unpack(raw)
    shared = vocab_size > 0
    vocab_size = abs(vocab_size)
    fields = dict(
        dim=dim,
        hidden_dim=hidden_dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        vocab_size=vocab_size,
        seq_len=seq_len,
    )
    bad = [k for k, v in fields.items() if v <= 0]
    if bad or dim % n_heads or (dim // n_heads) % 2 or n_heads % n_kv_heads:
        raise Llama2cError(f"{path}: implausible llama2.c header {fields}")
    return fields, shared


def convert_llama2c_weights(bin_path):
    """Read a llama2.c .bin; return (HF config dict, HF state_dict of fp32 tensors)."""
    path = os.fspath(bin_path)
    with open(path, "rb") as f:
        h, shared = _read_header(path, f)
        dim, hidden, L = h["dim"], h["hidden_dim"], h["n_layers"]
        head_size = dim // h["n_heads"]
        kv_dim = head_size * h["n_kv_heads"]
        # (name, layer count or None for a single tensor, shape), in file order.
        layout = [
            ("embed", None, (h["vocab_size"], dim)),
            ("rms_att", L, (dim,)),
            ("wq", L, (dim, dim)),
            ("wk", L, (kv_dim, dim)),
            ("wv", L, (kv_dim, dim)),
            ("wo", L, (dim, dim)),
            ("rms_ffn", L, (dim,)),
            ("w1", L, (hidden, dim)),
            ("w2", L, (dim, hidden)),
            ("w3", L, (hidden, dim)),
            ("rms_final", None, (dim,)),
            # Legacy precomputed RoPE tables (cos, sin); unused, HF recomputes them.
            ("freq_cis", None, (2, h["seq_len"], head_size // 2)),
        ]
        if not shared:
            layout.append(("wcls", None, (h["vocab_size"], dim)))

        n_floats = sum((count or 1) * int(np.prod(shape)) for _, count, shape in layout)
        expected = _HEADER.size + 4 * n_floats
        actual = os.fstat(f.fileno()).st_size
        if actual != expected:
            raise Llama2cError(
                f"{path}: header {h} (classifier {'shared' if shared else 'separate'}) "
                f"implies {expected} bytes but the file has {actual}"
            )
        data = np.empty(n_floats, dtype="<f4")
        if f.readinto(memoryview(data).cast("B")) != 4 * n_floats:
            raise Llama2cError(f"{path}: file ended while reading the weights")
        flat = torch.from_numpy(data)

    weights, pos = {}, 0
    for name, count, shape in layout:
        full = ((count,) if count else ()) + shape
        n = int(np.prod(full))
        weights[name] = flat[pos : pos + n].view(full)
        pos += n

    sd = {"model.embed_tokens.weight": weights["embed"]}
    for i in range(L):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = weights["rms_att"][i]
        sd[p + "self_attn.q_proj.weight"] = _permute_rope(weights["wq"][i], h["n_heads"])
        sd[p + "self_attn.k_proj.weight"] = _permute_rope(weights["wk"][i], h["n_kv_heads"])
        sd[p + "self_attn.v_proj.weight"] = weights["wv"][i]
        sd[p + "self_attn.o_proj.weight"] = weights["wo"][i]
        sd[p + "post_attention_layernorm.weight"] = weights["rms_ffn"][i]
        sd[p + "mlp.gate_proj.weight"] = weights["w1"][i]
        sd[p + "mlp.up_proj.weight"] = weights["w3"][i]
        sd[p + "mlp.down_proj.weight"] = weights["w2"][i]
    sd["model.norm.weight"] = weights["rms_final"]
    if not shared:
        sd["lm_head.weight"] = weights["wcls"]

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": dim,
        "intermediate_size": hidden,
        "num_hidden_layers": L,
        "num_attention_heads": h["n_heads"],
        "num_key_value_heads": h["n_kv_heads"],
        "vocab_size": h["vocab_size"],
        "max_position_embeddings": h["seq_len"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": shared,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    return config, sd


def llama2c_generation_config():
    """Where generation stops. These models were trained on stories separated by BOS, and
    llama2.c's run.c ends a sample at the BOS that starts the next story (it never checks EOS):
    BOS joins EOS as a stop token, in the list form transformers' generate() reads."""
    return {"bos_token_id": BOS, "eos_token_id": [EOS, BOS]}


def write_llama2c_as_hf(bin_path, out_dir, max_shard_bytes=None):
    """Convert a llama2.c .bin into a Hugging Face model directory (config.json, weights,
    generation_config.json); return its config."""
    config, state_dict = convert_llama2c_weights(bin_path)
    save_checkpoint(out_dir, config, state_dict, max_shard_bytes=max_shard_bytes)
    write_json(os.path.join(os.fspath(out_dir), GENERATION_CONFIG), llama2c_generation_config())
    return config
