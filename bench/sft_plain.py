"""The SFT step the cells run through the bridge, as a plain PyTorch loop in one process:
the baseline for sft_cells_vs_plain. Same model code, loss and optimizer; no RPC.

usage: sft_plain.py MODEL_DIR BATCH SEQ_LEN STEPS [lora RANK]   (prints JSON)
"""

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the bridge runs

import torch  # noqa: E402
from thinkcells_bridge.loading import load_model  # noqa: E402
from thinkcells_bridge.lora import apply_lora  # noqa: E402
from thinkcells_bridge.losses import cross_entropy  # noqa: E402
from thinkcells_bridge.training import token_logprobs  # noqa: E402

model_dir, batch, seq_len, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = load_model(model_dir, torch.device("cpu"), torch.float32)
if len(sys.argv) > 6 and sys.argv[5] == "lora":
    apply_lora(model, rank=int(sys.argv[6]), alpha=2 * int(sys.argv[6]), dropout=0.0, targets="all-linear")
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-4)
vocab = model.config.vocab_size
g = torch.Generator().manual_seed(0)


def step():
    ids = torch.randint(3, vocab, (batch, seq_len), generator=g)
    logp, _, _ = token_logprobs(model, ids, with_entropy=False)
    loss, _ = cross_entropy(logp, torch.ones_like(logp))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


model.train()
step()  # warm-up
start = time.perf_counter()
for _ in range(steps):
    step()
elapsed = time.perf_counter() - start
print(json.dumps({"tokens_per_s": batch * (seq_len - 1) * steps / elapsed}))
