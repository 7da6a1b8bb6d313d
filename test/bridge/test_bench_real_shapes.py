"""bench/real_shapes.py at tiny sizes, so the benchmark `npm run bench` runs at real shapes cannot rot:
every case runs on both sides and yields a finite number."""

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "real_shapes.py"


def test_every_case_runs_on_both_sides():
    out = subprocess.run([sys.executable, str(BENCH), "--smoke", "gemma-3-1b"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    results = {r["name"].removeprefix("real_shapes.gemma-3-1b."): r for r in json.loads(out.stdout)}
    failed = {name: r["note"] for name, r in results.items() if name.endswith(".error")}
    assert not failed, failed
    for name in ("train_step_mib.before", "train_step_mib", "sft_vs_transformers", "sample_vs_transformers"):
        assert name in results, sorted(results)
    for name, r in results.items():
        # A tiny step may add no resident memory at all; times and speeds are never 0.
        assert math.isfinite(r["value"]) and (r["value"] > 0 or r["unit"] in ("MiB", "ratio")), (name, r)
