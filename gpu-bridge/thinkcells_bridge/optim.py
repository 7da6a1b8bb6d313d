"""The optimizer side of a training step: AdamW over the trainable parameters, gradient-norm
clipping, and refusing non-finite updates (the weights stay as they were)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class AdamWConfig:
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0  # None: no clipping


@dataclass
class Trainer:
    """What a model accumulates between optimizer steps: gradients (on the parameters), the
    AdamW state, the step count, and whether a non-finite loss was seen."""

    model: nn.Module
    optimizer: torch.optim.AdamW | None = None
    step: int = 0
    nonfinite: list[str] = field(default_factory=list)
    # The model's own random stream (adapter dropout): runs are reproducible whatever else the
    # bridge does, and it is saved with the training state.
    rng: torch.Tensor = field(default_factory=lambda: torch.Generator().manual_seed(0).get_state())
    cuda_rng: torch.Tensor | None = None  # the current GPU's stream, once used

    @contextmanager
    def random_state(self):
        """Runs the block on this trainer's random streams, leaving the global ones as they were."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.rng)
            if devices:
                if self.cuda_rng is None:
                    torch.cuda.manual_seed(0)
                else:
                    torch.cuda.set_rng_state(self.cuda_rng)
            yield
            self.rng = torch.get_rng_state()
            if devices:
                self.cuda_rng = torch.cuda.get_rng_state()

    def params(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def ensure_optimizer(self, config: AdamWConfig) -> torch.optim.AdamW:
        named = self.params()
        if not named:
            raise ValueError("the model has no trainable parameters")
        current = {id(p) for _, p in named}
        if self.optimizer is None or {id(p) for g in self.optimizer.param_groups for p in g["params"]} != current:
            # Matrices decay; norms and biases do not (as Hugging Face's Trainer does).
            groups = [{"params": [p for _, p in named if (p.ndim >= 2) == decays], "decays": decays} for decays in (True, False)]
            self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
        for group in self.optimizer.param_groups:
            group.update(lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay if group["decays"] else 0.0)
        return self.optimizer

    def optim_step(self, config: AdamWConfig) -> dict:
        """Clips and applies the accumulated gradients, or skips the update when the loss or the
        gradient norm was not finite. Gradients are cleared either way."""
        optimizer = self.ensure_optimizer(config)
        params = [p for _, p in self.params() if p.grad is not None]
        if not params:
            raise ValueError("no gradients to apply: call forward_backward first")
        # Clips in place and returns the norm before clipping (inf/nan when non-finite).
        norm = float(nn.utils.clip_grad_norm_(params, config.max_grad_norm if config.max_grad_norm is not None else math.inf))
        reason = None
        if self.nonfinite:
            reason = f"non-finite loss in {self.nonfinite[0]}"
        elif not math.isfinite(norm):
            reason = f"non-finite gradient norm ({norm})"
        if reason is None:
            optimizer.step()
            self.step += 1
        optimizer.zero_grad(set_to_none=True)
        self.nonfinite.clear()
        return {"grad_norm": norm, "skipped": reason is not None, "reason": reason, "step": self.step}
