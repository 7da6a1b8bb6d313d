"""The optimizer side of a training step: AdamW over the trainable parameters, gradient-norm
clipping, and refusing non-finite updates (the weights and the optimizer state stay as they were)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch._dynamo  # noqa: F401 (the first AdamW imports it, ~1 s: paid when the bridge starts, not in a step)
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
    # The client whose forward_backward…optim_step cycle the gradients belong to (ops.py sets
    # it): until its optim_step, another client's gradients would mix with them.
    holder: str | None = None

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
            groups = [
                {"params": [p for _, p in named if (p.ndim >= 2) == decays], "decays": decays}
                for decays in (True, False)
            ]
            self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)
        for group in self.optimizer.param_groups:
            group.update(
                lr=config.lr,
                betas=config.betas,
                eps=config.eps,
                weight_decay=config.weight_decay if group["decays"] else 0.0,
            )
        return self.optimizer

    def optim_step(self, config: AdamWConfig) -> dict:
        """Clips and applies the accumulated gradients, or skips the update when a loss or the
        gradient norm was not finite, or when the update would leave a weight non-finite.
        Gradients are cleared and the cycle ends either way."""
        optimizer = self.ensure_optimizer(config)
        params = [p for _, p in self.params() if p.grad is not None]
        if not params and not self.nonfinite:
            raise ValueError("no gradients to apply: call forward_backward first")
        # Clips in place and returns the norm before clipping (inf/nan when non-finite); None when
        # no micro-batch had a backward (every loss was non-finite).
        norm = (
            float(
                nn.utils.clip_grad_norm_(params, config.max_grad_norm if config.max_grad_norm is not None else math.inf)
            )
            if params
            else None
        )
        if self.nonfinite:
            reason = f"non-finite loss in {self.nonfinite[0]}"
        elif not math.isfinite(norm):
            reason = f"non-finite gradient norm ({norm})"
        else:
            reason = self._update(optimizer, params, config)
        if reason is None:
            self.step += 1
        optimizer.zero_grad(set_to_none=True)
        self.nonfinite.clear()
        self.holder = None
        return {"grad_norm": norm, "skipped": reason is not None, "reason": reason, "step": self.step}

    def _update(self, optimizer: torch.optim.AdamW, params: list[nn.Parameter], config: AdamWConfig) -> str | None:
        """AdamW's step; None, or why it was rolled back. Undoing a step needs the weights and
        moments from before it: a copy of 3× the trainable parameters, small for adapters but
        as large as the model in full fine-tuning. So the copy is only taken when a cheap bound
        cannot rule out an overflow (a huge lr or weight decay, fp16's ε of 0); the check after
        such a step is one fused reduction over the updated weights."""
        if _update_stays_finite(optimizer, params, config):
            optimizer.step()
            return None
        saved = [(p.detach().clone(), {k: v.clone() for k, v in optimizer.state.get(p, {}).items()}) for p in params]
        optimizer.step()
        if math.isfinite(_max_abs(params)):
            return None
        with torch.no_grad():
            for p, (weights, state) in zip(params, saved):
                p.copy_(weights)
                if state:
                    optimizer.state[p] = state
                else:  # this was the parameter's first step: it had no state
                    del optimizer.state[p]
        fix = (
            "a smaller lr or weight_decay"
            if _eps_as_held(params, config.eps) > 0
            else f"a larger eps ({config.eps} is 0 in the weights' dtype)"
        )
        return (
            f"the update would leave weights non-finite (lr {config.lr}, weight_decay {config.weight_decay}, "
            f"eps {config.eps}): rolled back; a finite update needs {fix}"
        )

    def discard_cycle(self) -> None:
        """Forgets the gradients of an unfinished cycle (its client has gone, or stopped mid-step)."""
        self.model.zero_grad(set_to_none=True)
        self.nonfinite.clear()
        self.holder = None


def _max_abs(tensors: list[torch.Tensor]) -> float:
    """The largest |element| (nan if any is nan): one fused reduction per device and dtype."""
    return float(nn.utils.get_total_norm(tensors, math.inf)) if tensors else 0.0


def _eps_as_held(params: list[nn.Parameter], eps: float) -> float:
    """ε as the moments (in the weights' dtype) hold it: fp16 rounds the usual 1e-8 to 0."""
    return min(float(torch.tensor(eps, dtype=d)) for d in {p.dtype for p in params})


def _update_stays_finite(optimizer: torch.optim.AdamW, params: list[nn.Parameter], config: AdamWConfig) -> bool:
    """Whether AdamW's step provably leaves every weight finite. Per element it computes
    p·(1 − lr·wd) − lr / (1 − β1^t) · m′ / (√v̂′ + ε) with m′ between the old moment m and the
    gradient g (a v′ that overflows only shrinks the step), so every intermediate and the result
    are bounded by the factor, lr / (1 − β1), (|m| + |g|) / ε and
    |p|·factor + lr / (1 − β1) · (|m| + |g|) / ε. Keeping them within a quarter of the dtype's
    range leaves room for rounding."""
    limit = min(torch.finfo(p.dtype).max for p in params) / 4
    eps = _eps_as_held(params, config.eps)
    if eps <= 0:
        return False
    moments = [optimizer.state[p]["exp_avg"] for p in params if "exp_avg" in optimizer.state.get(p, {})]
    factor = max(1.0, abs(1 - config.lr * config.weight_decay))  # 1: the groups without decay
    step_size = config.lr / (1 - config.betas[0])
    ratio = (_max_abs(moments) + _max_abs([p.grad for p in params])) / eps
    bounds = (factor, step_size, ratio, _max_abs(params) * factor + step_size * ratio)
    return all(b <= limit for b in bounds)  # False for nan too
