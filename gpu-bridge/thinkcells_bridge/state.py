"""Training state on disk: trainable weights, AdamW moments, RNG states and the step, enough
for a resumed run to continue bit for bit.

A state is a directory holding `state.safetensors` and `state.json`. It is written under a
temporary name and renamed into place, so an interrupted save leaves the previous state
whole (at worst under `<dir>.old-<pid>`, which loading falls back to). The next save removes
what killed saves left (staging.py): their `<dir>.tmp-<pid>` before writing, their
`<dir>.old-<pid>` once it has committed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from .optim import AdamWConfig, Trainer
from .safetensors import read_safetensors, write_safetensors
from .staging import naming, remove_stale

FORMAT = "thinkcells-training-state"
VERSION = 1


class StateError(ValueError):
    pass


def save_state(directory: str, trainer: Trainer, lora: dict | None, value_head: bool = False) -> list[str]:
    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    name = re.escape(target.name)
    remove_stale(target.parent, rf"{name}\.tmp-(?P<pid>\d+)")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a killed process that had our (recycled) pid
    tmp.mkdir()
    try:
        _write_state(tmp, trainer, lora, value_head)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    remove_stale(target.parent, rf"{name}\.old-(?P<pid>\d+)")
    return sorted(os.listdir(target))


def _write_state(tmp: Path, trainer: Trainer, lora: dict | None, value_head: bool) -> None:
    tensors: dict[str, torch.Tensor] = {}
    named = trainer.params()
    for name, p in named:
        tensors[f"param.{name}"] = p.detach()
        state = trainer.optimizer.state.get(p, {}) if trainer.optimizer else {}
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"{key}.{name}"] = state[key]
        if "step" in state:
            tensors[f"step.{name}"] = torch.as_tensor(state["step"], dtype=torch.float64).reshape(1)
    tensors["rng"] = trainer.rng
    if trainer.cuda_rng is not None:
        tensors["rng.cuda"] = trainer.cuda_rng
    with naming(tmp / "state.safetensors"):
        write_safetensors(str(tmp / "state.safetensors"), tensors)
    group = trainer.optimizer.param_groups[0] if trainer.optimizer else None
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "step": trainer.step,
        "trainable": [name for name, _ in named],
        "lora": lora,
        "value_head": value_head,
        "adamw": None
        if group is None
        else {
            "lr": group["lr"],
            "betas": list(group["betas"]),
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
        },
    }
    with naming(tmp / "state.json"), open(tmp / "state.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _find(directory: str) -> Path:
    target = Path(directory).resolve()
    if (target / "state.json").exists():
        return target
    # A save interrupted between its two renames leaves the previous state here.
    olds = sorted(target.parent.glob(f"{target.name}.old-*"))
    if olds and (olds[-1] / "state.json").exists():
        return olds[-1]
    raise StateError(f"{target}: no training state here (state.json is missing)")


def read_state_meta(directory: str) -> tuple[Path, dict]:
    path = _find(directory)
    try:
        meta = json.loads((path / "state.json").read_text())
    except ValueError as exc:
        raise StateError(f"{path / 'state.json'}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise StateError(f"{path / 'state.json'}: not a {FORMAT} version {VERSION} file")
    return path, meta


def load_state(path: Path, meta: dict, trainer: Trainer) -> None:
    """Restores weights, optimizer moments, RNG and step into a model whose trainable
    parameters (LoRA adapters already re-applied) match the saved ones."""
    tensors, _ = read_safetensors(str(path / "state.safetensors"))
    named = dict(trainer.params())
    if sorted(named) != sorted(meta["trainable"]):
        missing = sorted(set(meta["trainable"]) - set(named)) or sorted(set(named) - set(meta["trainable"]))
        raise StateError(
            f"{path}: the saved trainable parameters do not match the model's (first difference: {missing[0]!r})"
        )
    for name, p in named.items():
        saved = tensors[f"param.{name}"]
        if saved.shape != p.shape:
            raise StateError(
                f"{path}: parameter {name!r} has shape {list(saved.shape)}, the model's is {list(p.shape)}"
            )
        with torch.no_grad():
            p.copy_(saved)
        p.grad = None
    trainer.optimizer = None
    trainer.nonfinite.clear()
    if meta["adamw"] is not None:
        adamw = meta["adamw"]
        optimizer = trainer.ensure_optimizer(
            AdamWConfig(
                lr=adamw["lr"], betas=tuple(adamw["betas"]), eps=adamw["eps"], weight_decay=adamw["weight_decay"]
            )
        )
        for name, p in named.items():
            if f"exp_avg.{name}" in tensors:
                optimizer.state[p] = {
                    # AdamW keeps its per-parameter step as a float32 tensor (torch ≥ 1.12).
                    "step": tensors[f"step.{name}"].reshape(()).to(torch.float32),
                    "exp_avg": tensors[f"exp_avg.{name}"].to(p.device),
                    "exp_avg_sq": tensors[f"exp_avg_sq.{name}"].to(p.device),
                }
    trainer.rng = tensors["rng"]
    trainer.cuda_rng = tensors.get("rng.cuda")
    trainer.step = meta["step"]
