"""Training state on disk: trainable weights, AdamW moments, RNG states and the step, enough
for a resumed run to continue bit for bit.

A state is a directory holding `state.json` and the tensors: `state.safetensors` (version 1,
one process), or a torch.distributed.checkpoint directory (version 2, written by a bridge of
several ranks, each rank its own shards; distributed.py). Either loads into any number of
ranks. It is written under a temporary name and renamed into place, so an interrupted save
leaves the previous state whole (at worst under `<dir>.old-<pid>`, which loading falls back to).
The next save removes what killed saves left (staging.py): their `<dir>.tmp-<pid>` before
writing, their `<dir>.old-<pid>` once it has committed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from .optim import AdamWConfig, Trainer
from .safetensors import read_safetensors, write_safetensors
from .staging import naming, remove_stale

FORMAT = "thinkcells-training-state"
VERSION = 1  # state.safetensors
DCP_VERSION = 2  # a torch.distributed.checkpoint directory


class StateError(ValueError):
    pass


def save_state(directory: str, trainer: Trainer, lora: dict | None, value_head: bool = False) -> list[str]:
    def write(tmp: Path) -> None:
        with naming(tmp / "state.safetensors"):
            write_safetensors(str(tmp / "state.safetensors"), state_tensors(trainer))
        write_meta(tmp, trainer, lora, value_head, VERSION)

    return stage(directory, write)


def stage(directory: str, write: Callable[[Path], None]) -> list[str]:
    """Runs write(tmp) on a fresh temporary sibling of `directory`, then renames it into place;
    returns the files written."""
    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    name = re.escape(target.name)
    remove_stale(target.parent, rf"{name}\.tmp-(?P<pid>\d+)")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a killed process that had our (recycled) pid
    tmp.mkdir()
    try:
        write(tmp)
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


def state_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    """The trainable weights, AdamW's moments and steps, and the random streams, by name."""
    tensors: dict[str, torch.Tensor] = {}
    for name, p in trainer.params():
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
    return tensors


def write_meta(tmp: Path, trainer: Trainer, lora: dict | None, value_head: bool, version: int) -> None:
    """state.json, written last: its presence marks a complete state."""
    group = trainer.optimizer.param_groups[0] if trainer.optimizer else None
    meta = {
        "format": FORMAT,
        "version": version,
        "step": trainer.step,
        "trainable": [name for name, _ in trainer.params()],
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
    if meta.get("format") != FORMAT or meta.get("version") not in (VERSION, DCP_VERSION):
        raise StateError(f"{path / 'state.json'}: not a {FORMAT} version {VERSION} or {DCP_VERSION} file")
    return path, meta


def _read_dcp(path: Path, named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torch.distributed.checkpoint state's tensors, each read into a tensor shaped (and, for
    a sharded parameter, sharded) as the model's: any number of ranks, or none, reads any."""
    import torch.distributed.checkpoint as dcp  # only for this layout

    saved = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    targets = {}
    for key, entry in saved.items():
        kind, _, name = key.partition(".")
        if kind in ("param", "exp_avg", "exp_avg_sq") and name in named:
            targets[key] = torch.empty_like(named[name])
        else:
            targets[key] = torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
    dcp.load(targets, checkpoint_id=str(path))
    return targets


def _like(p: torch.Tensor, saved: torch.Tensor) -> torch.Tensor:
    """`saved` as parameter p holds it: on its device, and for a parameter sharded across ranks
    (a DTensor, distributed.py) a whole tensor becomes this rank's shard of it."""
    saved = saved.to(p.device)
    if hasattr(p, "device_mesh") and not hasattr(saved, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        # Every rank read the whole tensor: each keeps its shard, nothing is sent.
        return distribute_tensor(saved, p.device_mesh, p.placements, src_data_rank=None)
    return saved


def load_state(path: Path, meta: dict, trainer: Trainer) -> None:
    """Restores weights, optimizer moments, RNG and step into a model whose trainable
    parameters (LoRA adapters already re-applied) match the saved ones."""
    named = dict(trainer.params())
    if sorted(named) != sorted(meta["trainable"]):
        missing = sorted(set(meta["trainable"]) - set(named)) or sorted(set(named) - set(meta["trainable"]))
        raise StateError(
            f"{path}: the saved trainable parameters do not match the model's (first difference: {missing[0]!r})"
        )
    if meta["version"] == DCP_VERSION:
        tensors = _read_dcp(path, named)
    else:
        tensors, _ = read_safetensors(str(path / "state.safetensors"))
    for name, p in named.items():
        saved = tensors[f"param.{name}"]
        if saved.shape != p.shape:
            raise StateError(
                f"{path}: parameter {name!r} has shape {list(saved.shape)}, the model's is {list(p.shape)}"
            )
        with torch.no_grad():
            p.copy_(_like(p, saved))
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
                    "exp_avg": _like(p, tensors[f"exp_avg.{name}"]),
                    "exp_avg_sq": _like(p, tensors[f"exp_avg_sq.{name}"]),
                }
    trainer.rng = tensors["rng"]
    trainer.cuda_rng = tensors.get("rng.cuda")
    trainer.step = meta["step"]
