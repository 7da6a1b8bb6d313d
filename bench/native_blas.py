"""Sampling speed of the CPU decode path with each BLAS behind the native step, and with the
plain torch path, alternated in one process (the machine's speed drifts between runs).

usage: native_blas.py MODEL_DIR [REPEATS]   (prints JSON: label -> tokens/s, the median)
"""

import json
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the bridge runs

import torch  # noqa: E402
from thinkcells_bridge import native_kernels  # noqa: E402
from thinkcells_bridge.loading import load_model  # noqa: E402
from thinkcells_bridge.sampling import SampleParams, sample  # noqa: E402

model = load_model(sys.argv[1], torch.device("cpu"), torch.float32)
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
candidates = list(native_kernels._candidates())
labels = sorted({c[2] for c in candidates if native_kernels._symbol(c[0], c[1])}) + ["plain torch"]
# 64 sequences x 256 new tokens from BOS, as bench/run.ts's sample_tokens_per_s.
params = SampleParams(n=64, max_new_tokens=256, temperature=1.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=0)
warm = SampleParams(**{**params.__dict__, "max_new_tokens": 16})
bos = [torch.tensor([1])]


def use(label: str) -> None:
    native_kernels._native = False  # choose again
    os.environ["THINKCELLS_NATIVE"] = "0" if label == "plain torch" else "1"
    chosen = [c for c in candidates if c[2] == label]
    native_kernels._candidates = lambda: iter(chosen)


speeds: dict[str, list[float]] = {label: [] for label in labels}
for _ in range(repeats):
    for label in labels:
        use(label)
        sample(model, bos, warm)
        start = time.perf_counter()
        sample(model, bos, params)
        speeds[label].append(64 * 256 / (time.perf_counter() - start))
print(json.dumps({label: statistics.median(v) for label, v in speeds.items()}))
