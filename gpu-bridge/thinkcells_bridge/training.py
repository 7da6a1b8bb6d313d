"""forward_backward: one micro-batch through the model with autograd, a loss from losses.py,
and gradients accumulated on the trainable parameters (optim.Trainer applies them).

Batches arrive as the protocol sends them: sequences concatenated (`token_ids`, split by
`lengths`) with per-token arrays aligned to `token_ids`, where the value at token t belongs to
predicting t from the tokens before it (the first token of each sequence has none). Packed rows
(SFT packing) come with `example_lengths`: the examples in them attend only to themselves.

Nothing of [batch, tokens, vocab] is ever held: log-probs and entropies are computed over chunks
of positions (token_logprobs), the logits of one chunk at a time in forward and in backward.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from . import losses
from .language_model import LanguageModel
from .lora import adapters_disabled
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


# One chunk's fp32 logits take at most this many bytes; the log-softmax, the entropy and backward
# add a few temporaries of the same size (measured on CPU: 1.3 GB peak for Qwen2.5's vocabulary,
# whatever the batch, against 2.9 GB for the whole logits of 4 × 256 tokens). That is 441 tokens
# a chunk for Qwen2.5's 151,936-token vocabulary, 256 for Gemma 3's 262,144, and a whole batch of
# up to 131,072 tokens for a 512-token one.
LOGITS_CHUNK_BYTES = 256 * 2**20


def logits_chunk_tokens(vocab_size: int) -> int:
    """token_logprobs' default chunk: the positions whose fp32 logits fit LOGITS_CHUNK_BYTES."""
    return max(1, LOGITS_CHUNK_BYTES // (4 * vocab_size))


def token_logprobs(
    model: LanguageModel,
    ids: torch.Tensor,
    with_entropy: bool,
    checkpoint_layers: bool = False,
    with_values: bool = False,
    entropy_grad: bool = False,
    *,
    temperature: float = 1.0,
    segments: torch.Tensor | None = None,
    chunk_tokens: int | None = None,
):
    """log p(ids[:, t] | ids[:, <t]) for t ≥ 1 → [B, T-1]; with_entropy: the per-position
    entropy too (differentiable only with entropy_grad: as a metric it is computed without
    autograd); with_values: the value head's V at each position too.

    temperature: of softmax(logits / temperature), the distribution sampling at that temperature
    draws from (as TRL's GRPO trainer scores the policy); top-p and top-k play no part.
    segments: [B, T] the packed example of each token (example_segments; None: one per row):
    positions restart at each example and attention stays inside it.
    chunk_tokens: positions per chunk of the logits (None: logits_chunk_tokens of the vocabulary;
    0: all at once, the plain computation chunks must equal). With autograd each chunk is
    recomputed in backward, so one chunk's [n, vocab] logits exist at a time, never [B, T, vocab];
    a batch no larger than a chunk is computed whole (it fits, and needs no recomputation)."""
    b, t = ids.shape
    if segments is None:
        positions = torch.arange(t, device=ids.device)[None, :].expand(b, -1)
    else:
        positions, segments = example_positions(segments), segments[:, :-1]
    pad = torch.zeros(b, dtype=torch.long, device=ids.device)
    hidden = model.hidden_states(
        ids[:, :-1], positions[:, :-1], pad, checkpoint_layers=checkpoint_layers, segments=segments
    )
    chunk = logits_chunk_tokens(model.config.vocab_size) if chunk_tokens is None else chunk_tokens
    targets = ids[:, 1:]
    if chunk == 0 or chunk >= targets.numel():
        chosen, entropy = _token_scores(model, hidden, targets, temperature, with_entropy, entropy_grad)
    else:
        chosen, entropy = _chunked_token_scores(model, hidden, targets, chunk, temperature, with_entropy, entropy_grad)
    return chosen, entropy, model.values(hidden).float() if with_values else None


def _token_scores(model: LanguageModel, hidden, targets, temperature: float, with_entropy: bool, entropy_grad: bool):
    """log p(targets) and the entropy (or None) of softmax(model.logits(hidden) / temperature),
    for hidden [..., H] and targets [...]: the one place they are computed, over all positions at
    once or over a chunk."""
    logits = model.logits(hidden).float()
    if temperature != 1.0:
        logits = logits / temperature
    normalizer = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, targets[..., None]).squeeze(-1) - normalizer
    if not with_entropy:
        return chosen, None
    # As a metric the entropy builds no graph: nothing of its [n, vocab] size is kept for backward.
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = normalizer - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return chosen, entropy


def _chunked_token_scores(model, hidden, targets, chunk: int, temperature, with_entropy, entropy_grad):
    """_token_scores over `chunk` positions at a time. With autograd each chunk runs under
    non-reentrant checkpointing: it keeps its hidden states only and recomputes its logits when
    backward reaches it, so backward too holds one chunk's logits at a time."""
    pieces = zip(hidden.reshape(-1, hidden.shape[-1]).split(chunk), targets.reshape(-1).split(chunk))
    args = (temperature, with_entropy, entropy_grad)
    if torch.is_grad_enabled():
        scored = [checkpoint(_token_scores, model, h, y, *args, use_reentrant=False) for h, y in pieces]
    else:
        scored = [_token_scores(model, h, y, *args) for h, y in pieces]
    chosen = torch.cat([c for c, _ in scored]).view(targets.shape)
    entropy = torch.cat([e for _, e in scored]).view(targets.shape) if with_entropy else None
    return chosen, entropy


def example_segments(example_lengths: torch.Tensor | None, lengths: torch.Tensor, device) -> torch.Tensor | None:
    """Packed rows: the index of the example each token belongs to → [B, T] (None when
    example_lengths is None: one example per row). `example_lengths` are the packed examples'
    lengths in token order and must tile the rows; padding joins its row's last example."""
    if example_lengths is None:
        return None
    sizes, rows = example_lengths.tolist(), lengths.tolist()
    if any(n < 1 for n in sizes):
        raise BatchError("example_lengths: every packed example needs at least 1 token")
    if sum(sizes) != sum(rows):
        raise BatchError(f"example_lengths: they add up to {sum(sizes)} tokens but token_ids has {sum(rows)}")
    example_ends = set(itertools.accumulate(sizes))
    for row, end in enumerate(itertools.accumulate(rows)):
        if end not in example_ends:
            raise BatchError(f"example_lengths: an example runs past the end of row {row}; examples must tile each row")
    example = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    segments = torch.zeros(len(rows), max(rows), dtype=torch.long)
    for row, seq in enumerate(torch.split(example, rows)):
        segments[row] = seq[-1]
        segments[row, : len(seq)] = seq
    return segments.to(device)


def example_positions(segments: torch.Tensor) -> torch.Tensor:
    """Each token's position within its packed example: [B, T], 0 at every example's first token."""
    t = torch.arange(segments.shape[1], device=segments.device).expand_as(segments)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return t - torch.where(starts, t, 0).cummax(dim=1).values


@dataclass(frozen=True)
class Batch:
    """A forward_backward micro-batch as the model reads it."""

    ids: torch.Tensor  # [B, T], right-padded (pack)
    lengths: torch.Tensor
    device: torch.device
    segments: torch.Tensor | None  # packed rows (example_segments); None: one example per row
    checkpoint_layers: bool
    chunk_tokens: int | None  # token_logprobs' chunk_tokens

    def per_token(self, flat: torch.Tensor, name: str) -> torch.Tensor:
        return per_token(flat, self.lengths, name, self.device)

    def logprobs(self, model: LanguageModel, with_entropy: bool = False, **options):
        return token_logprobs(
            model,
            self.ids,
            with_entropy,
            checkpoint_layers=self.checkpoint_layers,
            segments=self.segments,
            chunk_tokens=self.chunk_tokens,
            **options,
        )


def _batch(model: LanguageModel, body: dict, checkpoint_layers: bool, chunk_tokens: int | None) -> Batch:
    device = model.output_weight().device
    lengths = body["lengths"]
    kind = body["loss"]["kind"]
    segments = example_segments(body["example_lengths"], lengths, device)
    if segments is not None and kind != "cross_entropy":
        # Per-sequence terms (advantages, sequence means, DPO's pairs) would span a row's examples.
        raise BatchError(f"example_lengths: packed rows are for the cross_entropy loss, not {kind}; send null")
    return Batch(pack(body["token_ids"], lengths, device), lengths, device, segments, checkpoint_layers, chunk_tokens)


def _autocast(batch: Batch, model: LanguageModel):
    """bf16 matmuls on GPUs that have them, fp32 weights and losses; CPU stays fp32."""
    weight = model.output_weight()
    if batch.device.type == "cuda" and weight.dtype == torch.float32 and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _result(loss: float, metrics: dict, batch: Batch) -> dict:
    metrics = {k: float(v) for k, v in metrics.items()}
    return {"loss": loss, "metrics": metrics, "tokens": int(sum(n - 1 for n in batch.lengths.tolist()))}


def forward(model: LanguageModel, body: dict, *, chunk_tokens: int | None = None) -> dict:
    """The loss and metrics of forward_backward's computation, without autograd and in eval mode
    (no adapter dropout): evaluation. Gradients and the trainer are left as they are."""
    batch = _batch(model, body, checkpoint_layers=False, chunk_tokens=chunk_tokens)
    with torch.no_grad(), _autocast(batch, model):
        loss, metrics = _loss(model, batch, body["loss"])
    return _result(float(loss), metrics, batch)


def forward_backward(model: LanguageModel, trainer: Trainer, body: dict, *, chunk_tokens: int | None = None) -> dict:
    """chunk_tokens: token_logprobs' (None: the default chunk for the vocabulary)."""
    spec = body["loss"]
    kind = spec["kind"]
    batch = _batch(model, body, body["gradient_checkpointing"], chunk_tokens)
    # Train mode (adapter dropout, from the trainer's own random stream) through backward too:
    # gradient checkpointing re-runs layers there and must draw the same dropout masks.
    model.train()
    try:
        with trainer.random_state():
            with _autocast(batch, model):
                loss, metrics = _loss(model, batch, spec)
            value = float(loss.detach())
            if math.isfinite(value):
                (loss * body["loss_scale"]).backward()
            else:
                # No backward: the step this micro-batch belongs to is skipped (optim_step says why).
                trainer.nonfinite.append(f"forward_backward ({kind}, loss {value})")
    finally:
        model.eval()
    return _result(value, metrics, batch)


def whole_batch_normalizers(model: LanguageModel, body: dict) -> dict[str, float]:
    """The normalizers `body`'s loss divides by (its own, else the defaults over this batch; DPO
    has none): given to each part of a batch split across ranks, they make the parts' losses and
    gradients add up to the whole batch's."""
    spec = body["loss"]
    batch = _batch(model, body, checkpoint_layers=False, chunk_tokens=None)
    if spec["kind"] == "dpo":
        return {}
    if spec["kind"] == "cross_entropy":
        given = spec["num_tokens"]
        return {"num_tokens": losses.weight_total(_ce_weights(batch, spec)) if given is None else given}
    mask = batch.per_token(spec["mask"], "loss.mask")
    defaults = {
        "num_tokens": losses.counted_tokens(mask),
        "num_sequences": losses.counted_sequences(mask),
        "constant": losses.sum_norm_constant(mask, spec["num_sequences"]),
    }
    return {k: v if spec[k] is None else spec[k] for k, v in defaults.items()}


def _ce_weights(batch: Batch, spec) -> torch.Tensor:
    weights = batch.per_token(spec["weights"], "loss.weights")
    if batch.segments is not None:
        # An example's first token is not predicted: the position before it is another example's.
        weights = weights * (batch.segments[:, 1:] == batch.segments[:, :-1])
    return weights


def _loss(model, batch: Batch, spec):
    kind = spec["kind"]
    if kind == "cross_entropy":
        logp, _, _ = batch.logprobs(model)
        return losses.cross_entropy(logp, _ce_weights(batch, spec), num_tokens=spec["num_tokens"])
    if kind in ("policy_gradient", "ppo"):
        return _policy_gradient(model, batch, spec)
    if kind == "dpo":
        return _dpo(model, batch, spec)
    raise BatchError(f"loss.kind {kind!r} is not supported")  # the protocol schema admits no other


def _reference_logprobs(model: LanguageModel, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs under the reference policy: the same model with its adapters off."""
    with torch.no_grad(), adapters_disabled(model):
        return batch.logprobs(model, temperature=temperature)[0]


def _policy_gradient(model, batch: Batch, spec):
    """The clipped policy-gradient family; "ppo" adds the value head's clipped loss. The policy,
    the reference and the entropy are those of the distribution sampled at spec["temperature"]."""
    mask = batch.per_token(spec["mask"], "loss.mask")
    old = batch.per_token(spec["old_logprobs"], "loss.old_logprobs")
    advantages = spec["advantages"].float()
    b = len(batch.lengths)
    if advantages.numel() == b:
        advantages = advantages.reshape(b).to(batch.device)  # one per sequence
    else:
        advantages = batch.per_token(advantages, "loss.advantages")
    temperature = spec["temperature"]
    ref = _reference_logprobs(model, batch, temperature) if spec["beta"] > 0 else None
    ppo = spec["kind"] == "ppo"
    logp, entropy, values = batch.logprobs(
        model, with_entropy=True, with_values=ppo, entropy_grad=spec["entropy_coef"] > 0, temperature=temperature
    )
    loss, metrics = losses.policy_gradient(
        logp,
        old,
        advantages,
        mask,
        eps_low=spec["eps_low"],
        eps_high=spec["eps_high"],
        ratio_level=spec["ratio_level"],
        aggregation=spec["aggregation"],
        constant=spec["constant"],
        num_tokens=spec["num_tokens"],
        num_sequences=spec["num_sequences"],
        ref_logprobs=ref,
        beta=spec["beta"],
        entropy=entropy,
        entropy_coef=spec["entropy_coef"],
    )
    if not ppo:
        return loss, metrics
    v_loss, v_metrics = losses.value_loss(
        values,
        batch.per_token(spec["old_values"], "loss.old_values"),
        batch.per_token(spec["returns"], "loss.returns"),
        mask,
        clip=spec["value_clip"],
        num_tokens=spec["num_tokens"],
    )
    total = loss + spec["value_coef"] * v_loss
    return total, {**metrics, **v_metrics, "policy_loss": metrics["loss"], "loss": float(total.detach())}


def _dpo(model, batch: Batch, spec):
    n = len(batch.lengths)
    if n % 2:
        raise BatchError("dpo: sequences come in (chosen, rejected) pairs: an even number is needed")
    mask = batch.per_token(spec["mask"], "loss.mask")
    policy = losses.sequence_logprob_sums(batch.logprobs(model)[0], mask)
    if spec["ref_logprobs"] is None:
        ref = losses.sequence_logprob_sums(_reference_logprobs(model, batch), mask)
    else:
        # Given (e.g. the initial weights' log-probs, computed once): no reference forward.
        ref = spec["ref_logprobs"].float().to(batch.device)
        if ref.numel() != n:
            raise BatchError(f"dpo: ref_logprobs has {ref.numel()} values for {n} sequences (one per sequence)")
    return losses.dpo(policy[0::2], policy[1::2], ref[0::2], ref[1::2], beta=spec["beta"])
