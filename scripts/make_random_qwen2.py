"""Writes a random Qwen2-shaped checkpoint (q/k/v bias, untied embeddings), for tests and
benchmarks that need a model of a given shape and no download.

usage: make_random_qwen2.py OUT_DIR [tiny|20m]
  tiny: the real Qwen2 vocabulary (151,646) on a 2-layer, 16-wide body, in two shards, so the
        shared Qwen2 tokenizer drives it;
  20m:  ~21M parameters (6 layers, width 512, vocab 4,096) for training benchmarks.
"""

import sys

import torch
from thinkcells_bridge.hf_checkpoint import save_checkpoint
from thinkcells_bridge.model import CausalLM, ModelConfig

PRESETS = {
    "tiny": dict(
        vocab_size=151646,
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=151643,
        eos_token_id=151645,
    ),
    "20m": dict(
        vocab_size=4096,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
    ),
}

out_dir, preset = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "tiny"
config = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    **PRESETS[preset],
}
torch.manual_seed(0)
model = CausalLM(ModelConfig.from_hf(config))
std = 0.5 if preset == "tiny" else 0.02  # tiny: logits spread enough for sampling to vary
for p in model.parameters():
    torch.nn.init.normal_(p, std=std)
state = model.state_dict()
total = sum(t.numel() * t.element_size() for t in state.values())
# tiny: 60% of the bytes per shard puts the untied embedding and head in different shards.
save_checkpoint(out_dir, config, state, max_shard_bytes=int(total * 0.6) if preset == "tiny" else None)
