"""Where the C decode step beats torch's fixed-shape step: sampling speed of both on random
Llama-shaped models of growing width (8 layers, LoRA r8 on every projection, as in training),
alternated in one process. The C step wins where per-op overhead sets the speed; wider, the
matmuls dominate and its per-call copy of every projection costs time and memory. The widest
width it wins at sets native_kernels.NATIVE_MAX_HIDDEN.

usage: decode_widths.py [REPEATS]   (prints JSON: [{hidden, rows, native, static}], tokens/s)
"""

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the bridge runs

import torch  # noqa: E402
from thinkcells_bridge.lora import apply_lora  # noqa: E402
from thinkcells_bridge.model import CausalLM, ModelConfig  # noqa: E402
from thinkcells_bridge.sampling import SampleParams, sample  # noqa: E402

WIDTHS = (64, 128, 256, 512, 640, 768, 896)
ROWS = (8, 64)
NEW_TOKENS = 48
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def model_of_width(hidden: int) -> CausalLM:
    heads = max(2, hidden // 64)
    config = {
        "model_type": "llama",
        "vocab_size": 4096,
        "hidden_size": hidden,
        "intermediate_size": hidden * 11 // 32 * 8,  # ~2.75 × hidden, as Llama's
        "num_hidden_layers": 8,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 2),
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    }
    torch.manual_seed(0)
    model = CausalLM(ModelConfig.from_hf(config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith("norm.weight"):
                p.normal_(0.0, p.shape[-1] ** -0.5)
    apply_lora(model, 8, 16, 0.0, "all-linear")
    return model.eval()


results = []
for hidden in WIDTHS:
    model = model_of_width(hidden)
    g = torch.Generator().manual_seed(0)
    for rows in ROWS:
        prompts = [torch.randint(3, 4000, (24,), generator=g) for _ in range(rows // 8)]
        best = {"native": 0.0, "static": 0.0}
        for _ in range(repeats):
            for decoder in best:
                params = SampleParams(
                    n=8, max_new_tokens=NEW_TOKENS, temperature=1.0, top_p=1.0, top_k=0,
                    stop_token_ids=(), seed=1, decoder=decoder,
                )  # fmt: skip
                with torch.no_grad():
                    start = time.perf_counter()
                    sample(model, prompts, params)
                    best[decoder] = max(best[decoder], rows * NEW_TOKENS / (time.perf_counter() - start))
        results.append({"hidden": hidden, "rows": rows, **best})
        print(f"hidden {hidden}, {rows} rows: {best}", file=sys.stderr, flush=True)
print(json.dumps(results))
