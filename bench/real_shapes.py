"""Training and sampling at the shapes users bring, on random weights: models shaped like
Qwen2.5-0.5B (vocabulary 151,936) and Gemma-3-1B (262,144), beside transformers on the same
model shape, batch and settings. Nothing is asserted; `npm run bench` records the results.

Each case runs in a fresh process of its own, so its peak RSS is its own: the process builds
its model, runs a small warm-up step, resets the kernel's high-water mark (/proc/self/clear_refs)
and reports the peak during the measured work above the RSS before it (`step_mib`) and in all.

Training is what a user on a CPU box or a 24 GB card runs at these sizes: LoRA rank 16 on every
projection, gradient checkpointing, fp32. The "before" rows score the logits all at once, as
forward_backward did before it computed them in chunks (training.token_logprobs, chunk_tokens=0).

usage: real_shapes.py [--smoke] [SHAPE ...]      prints a JSON list of results
       real_shapes.py --case CASE SHAPE [--smoke]  one case, in this process (JSON)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gpu-bridge"))
sys.path.insert(0, str(ROOT / "test" / "bridge"))

from hf_families import GEMMA_3_1B_IT, QWEN2_5_1_5B_INSTRUCT  # noqa: E402 (published configs, declared once)
from thinkcells_bridge.lora import apply_lora  # noqa: E402
from thinkcells_bridge.model import CausalLM, ModelConfig  # noqa: E402
from thinkcells_bridge.optim import Trainer  # noqa: E402
from thinkcells_bridge.sampling import SampleParams, sample  # noqa: E402
from thinkcells_bridge.training import forward_backward  # noqa: E402

# Qwen2.5-0.5B's published sizes on Qwen2.5-1.5B's config: the two differ in sizes only.
QWEN2_5_0_5B = {
    **QWEN2_5_1_5B_INSTRUCT,
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "max_window_layers": 24,
}
SHAPES = {"qwen2.5-0.5b": QWEN2_5_0_5B, "gemma-3-1b": GEMMA_3_1B_IT}
# --smoke: the same harness on a model small enough for a test (sizes only differ).
SMOKE_SIZES = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, head_dim=16
)

LORA = dict(rank=16, alpha=32, dropout=0.0, targets="all-linear")
# Training batch × length, the long sequence (a common SFT cutoff), sampling rows × prompt × new tokens.
SIZES = dict(train=(8, 512), long=4096, sample=(16, 32, 128))
SMOKE = dict(train=(2, 32), long=64, sample=(2, 8, 4))


def config_dict(shape: str, smoke: bool) -> dict:
    config = copy.deepcopy(SHAPES[shape])
    if smoke:
        config.update(SMOKE_SIZES, num_key_value_heads=2, sliding_window=16, bos_token_id=1, eos_token_id=2)
        config.pop("max_window_layers", None)
    return config


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(work) -> dict:
    """Seconds and peak memory of work(): the peak is measured from a reset high-water mark."""
    before = rss_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    peak = rss_mib("VmHWM")
    return {"seconds": seconds, "peak_mib": peak, "step_mib": peak - before}


def random_ids(vocab: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))


def native_model(config: dict) -> CausalLM:
    torch.manual_seed(0)
    return CausalLM(ModelConfig.from_hf(config)).eval()


def transformers_model(config: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    hf_config = AutoConfig.for_model(**{k: v for k, v in config.items() if k not in ("architectures",)})
    return AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32, attn_implementation="sdpa").eval()


def native_train(config: dict, batch: int, length: int, chunk_tokens: int | None) -> dict:
    model = native_model(config)
    apply_lora(model, **LORA)
    trainer = Trainer(model)

    def step(b: int, t: int, seed: int) -> None:
        ids = random_ids(config["vocab_size"], (b * t,), seed)
        body = {
            "token_ids": ids,
            "lengths": torch.full((b,), t),
            "loss": {"kind": "cross_entropy", "weights": torch.ones(b * t), "num_tokens": None},
            "loss_scale": 1.0,
            "gradient_checkpointing": True,
            "example_lengths": None,
        }
        forward_backward(model, trainer, body, chunk_tokens=chunk_tokens)
        trainer.discard_cycle()

    step(1, 16, seed=0)  # warm-up: one-time initialisation stays out of the measurement
    return measure(lambda: step(batch, length, seed=1)) | {"tokens": batch * (length - 1)}


def transformers_train(config: dict, batch: int, length: int) -> dict:
    """What TRL's SFTTrainer runs for the same step: peft LoRA, transformers' gradient
    checkpointing and its own causal-LM loss (full logits, upcast to fp32)."""
    from peft import LoraConfig, get_peft_model

    model = transformers_model(config)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lora = LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=0.0, target_modules="all-linear")
    model = get_peft_model(model, lora)
    model.train()

    def step(b: int, t: int, seed: int) -> None:
        ids = random_ids(config["vocab_size"], (b, t), seed)
        model(input_ids=ids, labels=ids).loss.backward()
        model.zero_grad(set_to_none=True)

    step(1, 16, seed=0)
    return measure(lambda: step(batch, length, seed=1)) | {"tokens": batch * (length - 1)}


def native_sample(config: dict, rows: int, prompt_len: int, new_tokens: int) -> dict:
    model = native_model(config)
    prompts = list(random_ids(config["vocab_size"], (rows, prompt_len), seed=2))

    def run(prompts, n_new):
        params = SampleParams(n=1, max_new_tokens=n_new, temperature=1.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=0)
        sample(model, prompts, params)

    run(prompts[:1], 2)
    return measure(lambda: run(prompts, new_tokens)) | {"tokens": rows * new_tokens}


def transformers_sample(config: dict, rows: int, prompt_len: int, new_tokens: int) -> dict:
    model = transformers_model(config)
    ids = random_ids(config["vocab_size"], (rows, prompt_len), seed=2)

    def run(ids, n_new):
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                max_new_tokens=n_new,
                min_new_tokens=n_new,
                pad_token_id=0,
            )

    run(ids[:1], 2)
    return measure(lambda: run(ids, new_tokens)) | {"tokens": rows * new_tokens}


def run_case(case: str, shape: str, smoke: bool) -> dict:
    config = config_dict(shape, smoke)
    sizes = SMOKE if smoke else SIZES
    (b, t), long_len, (rows, prompt_len, new) = sizes["train"], sizes["long"], sizes["sample"]
    cases = {
        "train_before": lambda: native_train(config, b, t, chunk_tokens=0),
        "train": lambda: native_train(config, b, t, chunk_tokens=None),
        "train_long": lambda: native_train(config, 1, long_len, chunk_tokens=None),
        "train_transformers": lambda: transformers_train(config, b, t),
        "sample": lambda: native_sample(config, rows, prompt_len, new),
        "sample_transformers": lambda: transformers_sample(config, rows, prompt_len, new),
    }
    return cases[case]()


CASES = ("train_before", "train", "train_long", "train_transformers", "sample", "sample_transformers")


def case_in_subprocess(case: str, shape: str, smoke: bool) -> dict:
    args = [sys.executable, __file__, "--case", case, shape] + (["--smoke"] if smoke else [])
    out = subprocess.run(args, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        # Killed by a signal, the last line is whatever it printed before (-9 is usually the out-of-memory killer).
        how = f"killed by signal {-out.returncode}" if out.returncode < 0 else f"exited with {out.returncode}"
        return {"error": f"{how}; last output: {lines[-1][:300]}" if lines else f"{how}, no output"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def results_for(shape: str, smoke: bool) -> list[dict]:
    """The cases of one shape as bench results (name, value, unit, note), with the ratios.

    A case that fails (e.g. killed for memory) becomes an error row; the rows that need it are left out and the
    others are still reported, since "the plain computation does not fit" is itself the result."""
    m = {case: case_in_subprocess(case, shape, smoke) for case in CASES}
    ok = {case for case, r in m.items() if "error" not in r}
    sizes = SMOKE if smoke else SIZES
    (b, t), long_len, (rows, _, new) = sizes["train"], sizes["long"], sizes["sample"]
    setting = f"LoRA r16 all-linear, gradient checkpointing, fp32, {b}×{t} tokens"

    def tps(case: str) -> float:
        return m[case]["tokens"] / m[case]["seconds"]

    peak = "peak RSS of the process, weights included"
    # (name, cases it needs, value, unit, note); values are lambdas so missing cases are never read.
    table = [
        (
            "train_step_mib.before",
            ["train_before"],
            lambda: m["train_before"]["step_mib"],
            "MiB",
            f"logits all at once; {setting}",
        ),
        ("train_step_mib", ["train"], lambda: m["train"]["step_mib"], "MiB", f"chunked logits; {setting}"),
        (
            "train_step_mib.transformers",
            ["train_transformers"],
            lambda: m["train_transformers"]["step_mib"],
            "MiB",
            f"transformers + peft; {setting}",
        ),
        ("train_peak_mib.before", ["train_before"], lambda: m["train_before"]["peak_mib"], "MiB", peak),
        ("train_peak_mib", ["train"], lambda: m["train"]["peak_mib"], "MiB", peak),
        (
            "train_memory_before_vs_after",
            ["train_before", "train"],
            lambda: m["train_before"]["step_mib"] / max(m["train"]["step_mib"], 0.1),
            "ratio",
            "target ≥ 3",
        ),
        ("train_seconds.before", ["train_before"], lambda: m["train_before"]["seconds"], "s", "one forward_backward"),
        ("train_seconds", ["train"], lambda: m["train"]["seconds"], "s", "one forward_backward"),
        (
            "train_time_after_vs_before",
            ["train_before", "train"],
            lambda: m["train"]["seconds"] / m["train_before"]["seconds"],
            "ratio",
            "target ≤ 1",
        ),
        ("train_long_step_mib", ["train_long"], lambda: m["train_long"]["step_mib"], "MiB", f"1×{long_len} tokens"),
        ("train_long_peak_mib", ["train_long"], lambda: m["train_long"]["peak_mib"], "MiB", peak),
        ("sft_tokens_per_s", ["train"], lambda: tps("train"), "tokens/s", setting),
        (
            "sft_tokens_per_s.transformers",
            ["train_transformers"],
            lambda: tps("train_transformers"),
            "tokens/s",
            setting,
        ),
        (
            "sft_vs_transformers",
            ["train", "train_transformers"],
            lambda: tps("train") / tps("train_transformers"),
            "ratio",
            "thinkcells ÷ transformers",
        ),
        (
            "sample_tokens_per_s",
            ["sample"],
            lambda: tps("sample"),
            "tokens/s",
            f"{rows} prompts × {new} new tokens, T = 1",
        ),
        (
            "sample_tokens_per_s.transformers",
            ["sample_transformers"],
            lambda: tps("sample_transformers"),
            "tokens/s",
            "generate(), same work",
        ),
        (
            "sample_vs_transformers",
            ["sample", "sample_transformers"],
            lambda: tps("sample") / tps("sample_transformers"),
            "ratio",
            "thinkcells ÷ transformers",
        ),
    ]
    errors = [(f"{case}.error", 0, "", m[case]["error"]) for case in CASES if case not in ok]
    reported = [(n, value(), u, note) for n, needs, value, u, note in table if ok.issuperset(needs)]
    return [
        {"name": f"real_shapes.{shape}.{n}", "value": v, "unit": u, "note": note} for n, v, u, note in errors + reported
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shapes", nargs="*", default=list(SHAPES))
    parser.add_argument("--case", choices=CASES)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape {', '.join(unknown)}; expected among {', '.join(SHAPES)}")
    if args.case:
        print(json.dumps(run_case(args.case, args.shapes[0], args.smoke)))
        return
    results = [r for shape in args.shapes for r in results_for(shape, args.smoke)]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed case leaves no core dump
    main()
