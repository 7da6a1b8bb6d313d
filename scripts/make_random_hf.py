"""Writes a small random checkpoint of an architecture the bridge has no native code for, with
transformers' own save_pretrained (its on-disk names and config.json), for tests that drive
the transformers-backed path without a download.

usage: make_random_hf.py FAMILY OUT_DIR
  gpt_neox: fused query_key_value, LayerNorm with biases, parallel residual, partial rotary;
  olmo2:    q/k norms, norms after attention and MLP, tied embeddings.
"""

import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging

SHAPE = dict(
    vocab_size=256,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    # Wide initial weights: logits spread enough that greedy choices are clear and sampling varies.
    initializer_range=0.3,
)
FAMILIES = {
    "gpt_neox": dict(rotary_pct=0.5, use_parallel_residual=True),
    "olmo2": dict(num_key_value_heads=2, tie_word_embeddings=True),
}

family, out_dir = sys.argv[1], sys.argv[2]
if family not in FAMILIES:
    sys.exit(f"make_random_hf.py: unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.for_model(family, **SHAPE, **FAMILIES[family]))
logging.disable_progress_bar()
model.save_pretrained(out_dir)
