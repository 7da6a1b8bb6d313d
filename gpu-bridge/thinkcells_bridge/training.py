"""forward_backward: one micro-batch through the model with autograd, a loss from losses.py,
and gradients accumulated on the trainable parameters (optim.Trainer applies them).

Batches arrive as the protocol sends them: sequences concatenated (`token_ids`, split by
`lengths`) with per-token arrays aligned to `token_ids`, where the value at token t belongs to
predicting t from the tokens before it (the first token of each sequence has none).
"""

from __future__ import annotations

import contextlib
import math

import torch

from . import losses
from .lora import adapters_disabled
from .language_model import LanguageModel
from .optim import Trainer


class BatchError(ValueError):
    pass


def pack(token_ids: torch.Tensor, lengths: torch.Tensor, device) -> torch.Tensor:
    """Right-padded ids [B, T]; causal attention never looks ahead, so padding needs no mask."""
    sizes = lengths.tolist()
    if any(n < 2 for n in sizes):
        raise BatchError("token_ids: every sequence needs at least 2 tokens to predict one")
    if sum(sizes) != token_ids.numel():
        raise BatchError(f"token_ids: lengths add up to {sum(sizes)} but {token_ids.numel()} ids were sent")
    ids = torch.zeros(len(sizes), max(sizes), dtype=torch.long)
    for row, seq in enumerate(torch.split(token_ids.long(), sizes)):
        ids[row, : len(seq)] = seq
    return ids.to(device)


def per_token(flat: torch.Tensor, lengths: torch.Tensor, name: str, device) -> torch.Tensor:
    """A flat per-token array aligned with token_ids → [B, T-1] over predicted positions
    (position t-1 holds the value for token t), zero past each sequence's end."""
    sizes = lengths.tolist()
    if flat.numel() != sum(sizes):
        raise BatchError(f"{name}: {flat.numel()} values for {sum(sizes)} tokens (one per token of token_ids)")
    out = torch.zeros(len(sizes), max(sizes) - 1, dtype=torch.float32)
    for row, seq in enumerate(torch.split(flat.float(), sizes)):
        out[row, : len(seq) - 1] = seq[1:]
    return out.to(device)


def token_logprobs(model: LanguageModel, ids: torch.Tensor, with_entropy: bool, checkpoint_layers: bool = False,
                   with_values: bool = False, entropy_grad: bool = False):
    """log p(ids[:, t] | ids[:, <t]) for t ≥ 1 → [B, T-1]; with_entropy: the per-position
    entropy too (differentiable only with entropy_grad: as a metric it is computed without
    autograd, a row at a time); with_values: the value head's V at each position too.

    Memory: the [B, T, vocab] logits are the largest tensor of a step (2.5 GB in fp32 for
    8 × 512 tokens of a 151k vocabulary), so nothing else that size is kept."""
    b, t = ids.shape
    positions = torch.arange(t, device=ids.device)[None, :].expand(b, -1)
    pad = torch.zeros(b, dtype=torch.long, device=ids.device)
    hidden = model.hidden_states(ids[:, :-1], positions[:, :-1], pad, checkpoint_layers=checkpoint_layers)
    logits = model.logits(hidden).float()
    normalizer = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, ids[:, 1:, None]).squeeze(-1) - normalizer
    entropy = None
    if with_entropy and entropy_grad:
        entropy = normalizer - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    elif with_entropy:
        with torch.no_grad():
            entropy = torch.stack([n - (torch.softmax(row, dim=-1) * row).sum(-1) for row, n in zip(logits, normalizer)])
    return chosen, entropy, model.values(hidden).float() if with_values else None


def forward_backward(model: LanguageModel, trainer: Trainer, body: dict) -> dict:
    device = model.output_weight().device
    lengths = body["lengths"]
    ids = pack(body["token_ids"], lengths, device)
    spec = body["loss"]
    kind = spec["kind"]
    # bf16 matmuls on GPUs that have them, fp32 weights and losses (autocast); CPU stays fp32.
    bf16 = device.type == "cuda" and model.output_weight().dtype == torch.float32 and torch.cuda.is_bf16_supported()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    # Train mode (adapter dropout, from the trainer's own random stream) through backward too:
    # gradient checkpointing re-runs layers there and must draw the same dropout masks.
    model.train()
    try:
        with trainer.random_state():
            with autocast:
                loss, metrics = _loss(model, ids, lengths, spec, device, body["gradient_checkpointing"])
            value = float(loss.detach())
            if math.isfinite(value):
                (loss * body["loss_scale"]).backward()
            else:
                # No backward: the step this micro-batch belongs to is skipped (optim_step says why).
                trainer.nonfinite.append(f"forward_backward ({kind}, loss {value})")
    finally:
        model.eval()
    metrics = {k: float(v) for k, v in metrics.items()}
    return {"loss": value, "metrics": metrics, "tokens": int(sum(n - 1 for n in lengths.tolist()))}


def _loss(model, ids, lengths, spec, device, checkpointing):
    kind = spec["kind"]
    if kind == "cross_entropy":
        logp, _, _ = token_logprobs(model, ids, with_entropy=False, checkpoint_layers=checkpointing)
        return losses.cross_entropy(logp, per_token(spec["weights"], lengths, "loss.weights", device), num_tokens=spec["num_tokens"])
    if kind in ("policy_gradient", "ppo"):
        return _policy_gradient(model, ids, lengths, spec, device, checkpointing)
    if kind == "dpo":
        return _dpo(model, ids, lengths, spec, device, checkpointing)
    raise BatchError(f"loss.kind {kind!r} is not supported")  # the protocol schema admits no other


def _reference_logprobs(model: LanguageModel, ids: torch.Tensor) -> torch.Tensor:
    """Log-probs under the reference policy: the same model with its adapters off."""
    with torch.no_grad(), adapters_disabled(model):
        return token_logprobs(model, ids, with_entropy=False)[0]


def _policy_gradient(model, ids, lengths, spec, device, checkpointing):
    """The clipped policy-gradient family; "ppo" adds the value head's clipped loss."""
    mask = per_token(spec["mask"], lengths, "loss.mask", device)
    old = per_token(spec["old_logprobs"], lengths, "loss.old_logprobs", device)
    advantages = spec["advantages"].float()
    b = len(lengths)
    if advantages.numel() == b:
        advantages = advantages.reshape(b).to(device)  # one per sequence
    else:
        advantages = per_token(advantages, lengths, "loss.advantages", device)
    ref = _reference_logprobs(model, ids) if spec["beta"] > 0 else None
    ppo = spec["kind"] == "ppo"
    logp, entropy, values = token_logprobs(model, ids, with_entropy=True, checkpoint_layers=checkpointing,
                                           with_values=ppo, entropy_grad=spec["entropy_coef"] > 0)
    loss, metrics = losses.policy_gradient(
        logp, old, advantages, mask,
        eps_low=spec["eps_low"], eps_high=spec["eps_high"], ratio_level=spec["ratio_level"],
        aggregation=spec["aggregation"], constant=spec["constant"], num_tokens=spec["num_tokens"],
        num_sequences=spec["num_sequences"], ref_logprobs=ref, beta=spec["beta"],
        entropy=entropy, entropy_coef=spec["entropy_coef"],
    )
    if not ppo:
        return loss, metrics
    v_loss, v_metrics = losses.value_loss(
        values, per_token(spec["old_values"], lengths, "loss.old_values", device),
        per_token(spec["returns"], lengths, "loss.returns", device), mask, clip=spec["value_clip"], num_tokens=spec["num_tokens"])
    total = loss + spec["value_coef"] * v_loss
    return total, {**metrics, **v_metrics, "policy_loss": metrics["loss"], "loss": float(total.detach())}


def _dpo(model, ids, lengths, spec, device, checkpointing):
    if len(lengths) % 2:
        raise BatchError("dpo: sequences come in (chosen, rejected) pairs: an even number is needed")
    mask = per_token(spec["mask"], lengths, "loss.mask", device)
    logp, _, _ = token_logprobs(model, ids, with_entropy=False, checkpoint_layers=checkpointing)
    policy = losses.sequence_logprob_sums(logp, mask)
    if spec["ref_logprobs"] is None:
        ref = losses.sequence_logprob_sums(_reference_logprobs(model, ids), mask)
    else:
        # Given (e.g. the initial weights' log-probs, computed once): no reference forward.
        ref = spec["ref_logprobs"].float().to(device)
        if ref.numel() != len(lengths):
            raise BatchError(f"dpo: ref_logprobs has {ref.numel()} values for {len(lengths)} sequences (one per sequence)")
    return losses.dpo(policy[0::2], policy[1::2], ref[0::2], ref[1::2], beta=spec["beta"])
