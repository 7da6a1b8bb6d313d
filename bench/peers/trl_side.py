"""TRL's side of `npm run bench:peers`: runs one job (GRPO, SFT or DPO) described by a JSON file that
bench/peers/run.ts writes, in this process, and writes its result as JSON to the job's `result` path.

One job per process, so that the peak RSS reported (ru_maxrss, the process's high-water mark) is the
job's own. Timings exclude imports, model loading and saving: the training loop runs from TRL's
`on_train_begin` to `on_train_end`. The job carries the token ids thinkcells tokenized, so both sides
train on the same tokens (GRPO's prompts are tokenized by TRL and checked against thinkcells' ids).

usage: trl_side.py JOB.json
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

# Offline, whatever the environment says: nothing may be downloaded while the bench runs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer  # noqa: E402
from trl.rewards import get_soft_overlong_punishment  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from correctness_reward import correctness_reward  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


class LoopClock(TrainerCallback):
    """The training loop's wall time, the end of every optimizer step, and TRL's per-step logs."""

    def __init__(self) -> None:
        self.start = self.end = self.cpu_start = self.cpu = 0.0
        self.step_ends: list[float] = []
        self.logs: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self.cpu_start = cpu_seconds()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ends.append(time.perf_counter())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.logs.append(dict(logs))

    def on_train_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()
        self.cpu = cpu_seconds() - self.cpu_start

    def timing(self) -> dict:
        marks = [self.start, *self.step_ends]
        return {
            "loop_seconds": self.end - self.start,
            "step_seconds": [b - a for a, b in zip(marks, marks[1:])],
            "cpu_seconds": self.cpu,
        }


class TimedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that adds up the time it spends producing scored completions: generating them
    (tokenizing prompts, `generate`, decoding) and scoring them, which is what thinkcells' `sampleS`
    covers (sampling, decoding and the reward functions). TRL only reports such timings to W&B or
    MLflow, so this wraps its two methods for them."""

    sample_seconds = 0.0
    sampled_tokens = 0

    def _generate(self, prompts):
        start = time.perf_counter()
        out = super()._generate(prompts)
        self.sample_seconds += time.perf_counter() - start
        self.sampled_tokens += sum(len(ids) for ids in out[1])  # completion ids, up to and with EOS
        return out

    def _calculate_rewards(self, *args, **kwargs):
        start = time.perf_counter()
        out = super()._calculate_rewards(*args, **kwargs)
        self.sample_seconds += time.perf_counter() - start
        return out


class PretokenizedDPOTrainer(DPOTrainer):
    """DPOTrainer on pairs already tokenized by thinkcells (prompt_ids, chosen_ids, rejected_ids),
    which is what TRL's own preparation produces; TRL takes pre-tokenized data for SFT but not DPO."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset


def load(model_dir: str):
    # The exported tokenizer_config.json says LlamaTokenizer, whose transformers 5 class rebuilds the
    # pre-tokenizer and encodes text that starts with a space differently from tokenizer.json;
    # PreTrainedTokenizerFast reads tokenizer.json as it is (the ids thinkcells uses).
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model, tokenizer


def lora_config(lora: dict | None) -> LoraConfig | None:
    if lora is None:
        return None
    return LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def common_args(job: dict) -> dict:
    """TrainingArguments both sides agree on: fp32 on the CPU, no logging backends or checkpoints."""
    return dict(
        output_dir=job["work_dir"],
        max_steps=job["steps"],
        learning_rate=job["lr"],
        lr_scheduler_type="constant_with_warmup" if job.get("warmup_steps") else "constant",
        warmup_steps=job.get("warmup_steps", 0),
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=job["seed"],
        bf16=False,
        use_cpu=True,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )


def save(trainer, job: dict, merge: bool) -> None:
    if not job.get("out_dir"):
        return
    model = trainer.model.merge_and_unload() if merge else trainer.model
    model.save_pretrained(job["out_dir"])
    for name in TOKENIZER_FILES:
        source = Path(job["model_dir"]) / name
        if source.exists():
            shutil.copy(source, Path(job["out_dir"]) / name)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_grpo(job: dict) -> dict:
    model, tokenizer = load(job["model_dir"])
    prompts = job["prompts"]
    ids = tokenizer([p["prompt"] for p in prompts])["input_ids"]
    mismatched = [i for i, (a, b) in enumerate(zip(ids, job["prompt_ids"])) if a != b]
    if mismatched:
        i = mismatched[0]
        raise SystemExit(f"prompt {i} tokenizes to {ids[i]} here, {job['prompt_ids'][i]} in thinkcells")
    rewards = [correctness_reward]
    if job.get("overlong"):
        rewards.append(get_soft_overlong_punishment(job["overlong"]["max_length"], job["overlong"]["cache_length"]))
    batch = job["group_size"] * job["prompts_per_step"]
    micro = min(job["micro_batch_size"], batch)
    if batch % micro:
        raise SystemExit(f"{batch} completions a step do not split into micro-batches of {micro}")
    args = GRPOConfig(
        **common_args(job),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=batch // micro,
        num_generations=job["group_size"],
        max_completion_length=job["max_new_tokens"],
        temperature=job["temperature"],
        top_p=1.0,
        top_k=0,
        beta=job["beta"],
        num_iterations=1,
        epsilon=job["epsilon"],
        epsilon_high=job["epsilon_high"],
        loss_type=job["loss_type"],
        scale_rewards=job["scale_rewards"],
        shuffle_dataset=False,  # the prompts come in the order thinkcells draws them
        remove_unused_columns=False,
    )
    clock = LoopClock()
    trainer = TimedGRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
        peft_config=lora_config(job.get("lora")),
        callbacks=[clock],
    )
    trainer.train()
    result = {
        **clock.timing(),
        "sample_seconds": trainer.sample_seconds,
        "sampled_tokens": trainer.sampled_tokens,
        "peak_rss_bytes": peak_rss_bytes(),
        "loss": [log["loss"] for log in clock.logs],
        "reward": [log.get("reward") for log in clock.logs],
    }
    save(trainer, job, merge=job.get("lora") is not None)
    return result


def run_sft(job: dict) -> dict:
    model, tokenizer = load(job["model_dir"])
    rows = [
        {"input_ids": e["tokens"], "labels": [t if w else -100 for t, w in zip(e["tokens"], e["weights"])]}
        for e in job["examples"]
    ]
    args = SFTConfig(**common_args(job), per_device_train_batch_size=job["batch_size"], packing=False, max_length=None)
    clock = LoopClock()
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[clock]
    )
    trainer.train()
    result = {**clock.timing(), "peak_rss_bytes": peak_rss_bytes(), "loss": [log["loss"] for log in clock.logs]}
    save(trainer, job, merge=False)
    return result


def run_dpo(job: dict) -> dict:
    model, tokenizer = load(job["model_dir"])
    args = DPOConfig(
        **common_args(job),
        per_device_train_batch_size=job["batch_size"],
        beta=job["beta"],
        max_length=None,
        precompute_ref_log_probs=False,  # with LoRA the reference is the model with its adapters off
    )
    clock = LoopClock()
    trainer = PretokenizedDPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(job["pairs"]),
        processing_class=tokenizer,
        peft_config=lora_config(job["lora"]),
        callbacks=[clock],
    )
    trainer.train()
    result = {
        **clock.timing(),
        "peak_rss_bytes": peak_rss_bytes(),
        "loss": [log["loss"] for log in clock.logs],
        "reward_accuracy": [log.get("rewards/accuracies") for log in clock.logs],
    }
    save(trainer, job, merge=True)
    return result


RUNNERS = {"grpo": run_grpo, "sft": run_sft, "dpo": run_dpo}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(job["threads"])
    result = RUNNERS[job["kind"]](job)
    result["versions"] = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__}
    result["threads"] = torch.get_num_threads()
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
