"""Training losses: SFT cross-entropy, clipped policy gradient (GRPO, Dr.GRPO, DAPO, GSPO, PPO),
DPO and PPO's clipped value loss. (Advantages, GAE included, are computed on the TypeScript side.)

Pure functions on tensors. Per-token inputs are [B, T] over completion positions with a float
`mask` [B, T] (1 = a completion token that counts, 0 = prompt or padding). Every loss is computed
in fp32 whatever the input dtype (bf16 sums and exps lose too much), and returns
`(loss, metrics)` with `metrics` plain Python floats.

Masked positions may hold anything (padding garbage, even -inf): they are zero-filled before any
arithmetic, so they contribute neither to the value nor to the gradient, and never make NaN.

Gradient accumulation. When a batch is split into micro-batches whose losses are *summed*
(backward on each, no division by the number of micro-batches), pass the whole batch's
normalizers so that the sum equals the one-batch loss:
  - "token_mean" and `cross_entropy` / `value_loss`: `num_tokens` = the counted tokens
    (mask sum, or weight sum for `cross_entropy`) over all micro-batches;
  - "seq_mean_token_mean": `num_sequences` = the sequences with at least one counted token over
    all micro-batches;
  - "seq_mean_token_sum_norm": `constant` = the whole batch's B × max completion length (if
    only `num_sequences` is given, the constant is num_sequences × this micro-batch's T, which is
    right only when every micro-batch is padded to the same T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")


def _fp32(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x in fp32 with the positions outside `keep` set to 0 (value and gradient)."""
    return x.float().masked_fill(~keep, 0.0)


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> float:
    count = int(keep.sum())
    return float(x.detach().float().masked_fill(~keep, 0.0).sum()) / count if count else 0.0


def weight_total(weights: torch.Tensor) -> float:
    """Σ of the positive weights: cross_entropy's default `num_tokens`."""
    keep = weights > 0
    return float(_fp32(weights, keep).sum())


def counted_tokens(mask: torch.Tensor) -> float:
    """The counted (mask > 0) tokens: the default `num_tokens` of the policy-gradient and value losses."""
    return float((mask > 0).sum())


def counted_sequences(mask: torch.Tensor) -> float:
    """The rows [B, T] with a counted token: seq_mean_token_mean's default `num_sequences`."""
    return float(((mask > 0).sum(dim=-1) > 0).sum())


def sum_norm_constant(mask: torch.Tensor, num_sequences: float | None) -> float:
    """seq_mean_token_sum_norm's default `constant`: num_sequences (default the rows B) × T."""
    rows = mask.shape[0] if num_sequences is None else num_sequences
    return float(rows * mask.shape[1])


def sequence_logprob_sums(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t mask·logp per row: [B, T] → [B] fp32 (the sequence log-probs DPO compares), summed in
    fp64 as the client sums the reference log-probs it sends, so equal terms give equal sums."""
    return _fp32(logprobs, mask > 0).double().sum(dim=-1).float()


def cross_entropy(logprobs: torch.Tensor, weights: torch.Tensor, *, num_tokens: float | None = None):
    """Weighted negative log-likelihood: loss = −Σ w·logp / Σ w (0 when Σ w = 0).

    `logprobs` [B, T] are log p of the target tokens; `weights` [B, T] are 0 on prompt tokens for
    completion-only SFT. `num_tokens` replaces Σ w (gradient accumulation, see the module doc).
    Metrics: loss, tokens (count of w > 0), nll (the weighted mean nll of this batch: ppl = exp).
    """
    keep = weights > 0
    w = _fp32(weights, keep)
    weighted = -(_fp32(logprobs, keep) * w).sum()
    total = weight_total(weights)
    denom = total if num_tokens is None else float(num_tokens)
    # An all-zero weight batch gives loss 0 (and zero gradients) instead of 0/0.
    loss = weighted / denom if denom > 0 else weighted * 0.0
    metrics = {
        "loss": float(loss.detach()),
        "tokens": float(keep.sum()),
        "nll": float(weighted.detach()) / total if total > 0 else 0.0,
    }
    return loss, metrics


def policy_gradient(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    ratio_level: str = "token",
    aggregation: str = "seq_mean_token_mean",
    constant: float | None = None,
    num_tokens: float | None = None,
    num_sequences: float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
):
    """Clipped surrogate loss of GRPO / Dr.GRPO / DAPO / GSPO / PPO.

    Ratio: token level r_t = exp(logp_t − old_t); sequence level (GSPO)
    s_i = exp(mean_t∈o_i (logp_t − old_t)), applied to every token of sequence i (the gradient
    flows through the mean). Per-token loss
        ℓ_t = −min(r·A, clip(r, 1 − eps_low, 1 + eps_high)·A) + beta·KL_t − entropy_coef·H_t
    with KL_t = exp(ref − logp) − (ref − logp) − 1 (k3, ≥ 0) and A per sequence [B] (broadcast)
    or per token [B, T] (GAE). Aggregation:
      "seq_mean_token_mean"      Σ_i (Σ_t ℓ / |o_i|) / num_sequences      (GRPO)
      "token_mean"               Σ_i Σ_t ℓ / num_tokens                   (DAPO)
      "seq_mean_token_sum_norm"  Σ_i Σ_t ℓ / constant, default B × T      (Dr.GRPO)
    num_sequences defaults to the rows with at least one counted token (an all-masked row has no
    mean to average), num_tokens to the mask sum; the overrides are for micro-batches (module
    doc) and are ignored by the modes that do not use them.

    Metrics: loss, clip_fraction (counted tokens where the clip is active: r > 1 + eps_high with
    A > 0, or r < 1 − eps_low with A < 0), ratio_mean, advantage_mean (over counted sequences for
    [B] advantages, counted tokens for [B, T]), kl (if ref_logprobs), entropy (if given).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if ratio_level not in ("token", "sequence"):
        raise ValueError(f"ratio_level must be 'token' or 'sequence', got {ratio_level!r}")
    keep = mask > 0
    fmask = keep.float()
    lengths = fmask.sum(dim=-1)
    # Old log-probs and advantages are data: no gradient may flow into them.
    log_ratio = _fp32(logprobs, keep) - _fp32(old_logprobs.detach(), keep)
    if advantages.dim() == 1:
        adv = advantages.detach().float()[:, None].expand_as(log_ratio)
    elif advantages.shape == log_ratio.shape:
        adv = advantages.detach().float()
    else:
        raise ValueError(f"advantages must be [B] or [B, T], got {tuple(advantages.shape)}")
    adv = adv.masked_fill(~keep, 0.0)

    if ratio_level == "token":
        ratio = torch.exp(log_ratio)
    else:
        seq_log_ratio = log_ratio.sum(dim=-1) / lengths.clamp(min=1.0)
        ratio = torch.exp(seq_log_ratio)[:, None].expand_as(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)

    kl = None
    if ref_logprobs is not None:
        diff = _fp32(ref_logprobs.detach(), keep) - _fp32(logprobs, keep)
        kl = torch.exp(diff) - diff - 1.0
        if beta != 0.0:
            per_token = per_token + beta * kl
    ent = None
    if entropy is not None:
        ent = _fp32(entropy, keep)
        if entropy_coef != 0.0:
            per_token = per_token - entropy_coef * ent
    # Masked positions already contribute 0 to every term; this also drops their gradients.
    per_token = per_token * fmask

    nonempty = lengths > 0
    if aggregation == "token_mean":
        denom = counted_tokens(mask) if num_tokens is None else float(num_tokens)
        total = per_token.sum()
    elif aggregation == "seq_mean_token_mean":
        denom = counted_sequences(mask) if num_sequences is None else float(num_sequences)
        total = (per_token.sum(dim=-1) / lengths.clamp(min=1.0)).sum()
    else:
        denom = sum_norm_constant(mask, num_sequences) if constant is None else float(constant)
        total = per_token.sum()
    loss = total / denom if denom > 0 else total * 0.0

    with torch.no_grad():
        active = ((ratio > 1.0 + eps_high) & (adv > 0)) | ((ratio < 1.0 - eps_low) & (adv < 0))
        metrics = {
            "loss": float(loss.detach()),
            "clip_fraction": _masked_mean(active.float(), keep),
            "ratio_mean": _masked_mean(ratio, keep),
        }
        if advantages.dim() == 1:
            count = int(nonempty.sum())
            metrics["advantage_mean"] = float(advantages.float()[nonempty].sum()) / count if count else 0.0
        else:
            metrics["advantage_mean"] = _masked_mean(adv, keep)
        if kl is not None:
            metrics["kl"] = _masked_mean(kl, keep)
        if ent is not None:
            metrics["entropy"] = _masked_mean(ent, keep)
    return loss, metrics


def dpo(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
):
    """DPO: Δ = (πc − refc) − (πr − refr) on sequence log-probs [B]; loss = −mean log σ(β·Δ).

    Metrics: loss, reward_accuracy (fraction Δ > 0), reward_margin (mean β·Δ), chosen_reward
    (mean β·(πc − refc)), rejected_reward (mean β·(πr − refr)).
    """
    # float64: a few numbers per pair, and the metrics keep their digits (log 2 at π = π_ref);
    # the loss backward runs from is fp32, as every loss here.
    chosen = beta * (policy_chosen.double() - ref_chosen.detach().double())
    rejected = beta * (policy_rejected.double() - ref_rejected.detach().double())
    margin = chosen - rejected
    # logsigmoid stays finite for large negative margins where log(sigmoid(x)) would give -inf.
    loss = -F.logsigmoid(margin).mean()
    metrics = {
        "loss": float(loss.detach()),
        "reward_accuracy": float((margin > 0).float().mean()),
        "reward_margin": float(margin.detach().mean()),
        "chosen_reward": float(chosen.detach().mean()),
        "rejected_reward": float(rejected.detach().mean()),
    }
    return loss.float(), metrics


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    *,
    num_tokens: float | None = None,
):
    """PPO clipped value loss: 0.5 · mean_masked max((V − R)², (old + clip(V − old, −c, c) − R)²).

    `num_tokens` replaces the mask sum (gradient accumulation, see the module doc). Metrics:
    value_loss, value_clip_fraction (counted tokens where the clipped term is the larger),
    explained_variance 1 − Var(R − V) / Var(R) over counted tokens (0 when Var(R) = 0).
    """
    keep = mask > 0
    v = _fp32(values, keep)
    old = _fp32(old_values.detach(), keep)
    ret = _fp32(returns.detach(), keep)
    v_clipped = old + torch.clamp(v - old, -clip, clip)
    unclipped_sq = (v - ret) ** 2
    clipped_sq = (v_clipped - ret) ** 2
    per_token = torch.max(unclipped_sq, clipped_sq) * keep.float()
    denom = counted_tokens(mask) if num_tokens is None else float(num_tokens)
    loss = 0.5 * per_token.sum() / denom if denom > 0 else per_token.sum() * 0.0

    with torch.no_grad():
        r, err = ret[keep], (ret - v)[keep]
        var_r = float(((r - r.mean()) ** 2).mean()) if r.numel() else 0.0
        var_err = float(((err - err.mean()) ** 2).mean()) if r.numel() else 0.0
        explained = 1.0 - var_err / var_r if var_r > 0 else 0.0
        metrics = {
            "value_loss": float(loss.detach()),
            "value_clip_fraction": _masked_mean((clipped_sq > unclipped_sq).float(), keep),
            "explained_variance": explained,
        }
    return loss, metrics
