"""LoRA (arXiv 2106.09685): a trainable low-rank update B·A beside each frozen Linear.

A LoRA layer *is* an nn.Linear (same `weight`/`bias` parameters, same state-dict names) with
two extra parameters, so the base weights still load and save under their Hugging Face names.
Turning the adapters off gives back the base model: the reference policy for KL and DPO.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    """y = x Wᵀ + b + (α / r) · dropout(x) Aᵀ Bᵀ, with W and b frozen."""

    lora_A: nn.Parameter
    lora_B: nn.Parameter

    @classmethod
    def wrap(cls, base: nn.Linear, rank: int, alpha: float, dropout: float) -> LoRALinear:
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        device, dtype = layer.take_base(base)
        # As in the paper and PEFT: A random (Kaiming-uniform), B zero, so training starts
        # exactly at the base model.
        layer.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(layer.lora_A, a=math.sqrt(5))
        layer.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device, dtype=dtype))
        layer.scale = alpha / rank
        layer.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        layer.enabled = True
        return layer.train(base.training)  # a fresh Module starts in training mode

    def take_base(self, base: nn.Linear) -> tuple[torch.device, torch.dtype]:
        """Takes over the base layer's weight and bias, frozen, under their own names; returns
        the device and dtype the adapters get. (quant.py's QuantizedLoRALinear overrides this
        and `without_lora` to carry quantized storage instead.)"""
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        return base.weight.device, base.weight.dtype

    def without_lora(self) -> nn.Linear:
        """The base layer alone: a plain Linear with the same weight and bias."""
        plain = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(plain)
        plain.in_features, plain.out_features = self.in_features, self.out_features
        plain.weight, plain.bias = self.weight, self.bias
        return plain.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # the base layer's own op: a quantized base dequantizes there
        if not self.enabled:
            return y
        return y + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale


def merged_weight(linear: nn.Linear) -> torch.Tensor:
    """The weight a Linear effectively applies: W, plus (α/r)·B·A when its adapter is on."""
    if isinstance(linear, LoRALinear) and linear.enabled:
        return linear.weight + (linear.lora_B @ linear.lora_A) * linear.scale
    return linear.weight


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    targets: str | list[str],
    seed: int = 0,
    use_rslora: bool = False,
) -> list[str]:
    """Freezes every base parameter and puts an adapter on each targeted Linear of the decoder
    layers ("all-linear": all of the model's `adapter_targets`, or some of those names, like
    ["q_proj", "v_proj"]). Returns the adapted modules' names. Applying again replaces the
    adapters. `seed` fixes the adapters' random initialisation without touching the global
    random state. `use_rslora`: rank-stabilized LoRA's scale α/√r instead of α/r (PEFT's
    use_rslora, arXiv 2312.03732)."""
    offered = model.adapter_targets
    if not offered:
        raise ValueError(
            f"this {model.config.model_type} model offers no LoRA targets: its decoder layers have no nn.Linear "
            f"projections (GPT-2-style Conv1D layers are not adapted); remove_lora trains it in full instead"
        )
    names = list(offered) if targets == "all-linear" else list(targets)
    unknown = sorted(set(names) - set(offered))
    if unknown:
        raise ValueError(
            f"unknown LoRA target {unknown[0]!r} for this model; expected 'all-linear' or names among {', '.join(offered)}"
        )
    if rank < 1:
        raise ValueError(f"LoRA rank must be ≥ 1, got {rank}")
    remove_lora(model)
    for p in model.parameters():
        p.requires_grad_(False)
    adapted = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for parent_name, parent in model.named_modules():
            for child_name, child in list(parent.named_children()):
                if child_name in names and isinstance(child, nn.Linear):
                    # A quantized base brings its own adapter class (quant.py).
                    wrap = getattr(child, "lora_class", LoRALinear).wrap
                    layer = wrap(child, rank, alpha, dropout)
                    if use_rslora:
                        layer.scale = alpha / math.sqrt(rank)
                    setattr(parent, child_name, layer)
                    adapted.append(f"{parent_name}.{child_name}")
    return adapted


def remove_lora(model: nn.Module) -> None:
    """Drops every adapter (unmerged), leaving plain Linears with the base weights, all
    trainable again: full fine-tuning. (A quantized base stays quantized, hence frozen.)"""
    for parent in model.modules():
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.without_lora())
    for p in model.parameters():
        p.requires_grad_(True)


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def set_adapters(model: nn.Module, enabled: bool) -> None:
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.enabled = enabled


@contextmanager
def adapters_disabled(model: nn.Module):
    """The base model, for reference log-probs (KL, DPO), restoring the previous state after."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    previous = [m.enabled for m in layers]
    set_adapters(model, False)
    try:
        yield model
    finally:
        for m, state in zip(layers, previous):
            m.enabled = state
