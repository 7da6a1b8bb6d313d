"""Batched autoregressive sampling with a KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .language_model import LanguageModel
from .native_kernels import native_decoder
from .training import token_logprobs


class Cancelled(Exception):
    """The client cancelled the request."""


@dataclass(frozen=True)
class SampleParams:
    n: int
    max_new_tokens: int
    temperature: float  # 0 means greedy
    top_p: float
    top_k: int  # 0 means no limit
    stop_token_ids: tuple[int, ...]
    seed: int | None
    use_cache: bool = True


@dataclass
class SampleResult:
    tokens: torch.Tensor  # int32 [rows, max_new_tokens], 0 after each row's end
    lengths: torch.Tensor  # int32 [rows]
    logprobs: torch.Tensor  # float32 [rows, max_new_tokens], model log-probs (temperature 1)
    stop_reasons: list[str]


def left_pad(sequences: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacks sequences right-aligned: returns ids [B, T] and the pad count per row."""
    longest = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long, device=device)
    pad = torch.tensor([longest - len(s) for s in sequences], dtype=torch.long, device=device)
    for row, s in enumerate(sequences):
        ids[row, longest - len(s) :] = s.to(device)
    return ids, pad


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Masks logits outside the top-k and outside the smallest set with probability ≥ top_p."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p; the first always stays.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row by inverse-CDF sampling: a single uniform number per row, where
    torch.multinomial draws far more random numbers and is ~20x slower on CPU."""
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device) * cdf[:, -1:]
    # right=True: a token whose probability is 0 (its cdf step is flat) can never be chosen.
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


@torch.inference_mode()  # cheaper per op than no_grad: the decode loop is ~150 tiny ops a step
def sample(
    model: LanguageModel,
    prompts: list[torch.Tensor],
    params: SampleParams,
    cancelled: Callable[[], bool] = lambda: False,
) -> SampleResult:
    device = model.output_weight().device
    rows = [p for p in prompts for _ in range(params.n)]
    ids, pad = left_pad(rows, device)
    batch, prompt_len = ids.shape
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(params.seed)

    dtype = model.output_weight().dtype
    cache = model.new_cache(pad, prompt_len + params.max_new_tokens, dtype) if params.use_cache else None
    # One-token steps in C where that applies (Llama-shaped, CPU, fp32): per-op overhead, not
    # arithmetic, limits a small model's decode speed in eager PyTorch.
    decoder = native_decoder(model) if params.use_cache else None
    positions = (torch.arange(prompt_len, device=device)[None, :] - pad[:, None]).clamp(min=0)
    hidden = model.hidden_states(ids, positions, pad, cache)[:, -1]
    next_pos = positions[:, -1:] + 1

    tokens = torch.zeros(batch, params.max_new_tokens, dtype=torch.int32, device=device)
    logprobs = torch.zeros(batch, params.max_new_tokens, dtype=torch.float32, device=device)
    lengths = torch.full((batch,), params.max_new_tokens, dtype=torch.int32, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(params.stop_token_ids, dtype=torch.long, device=device)

    for step in range(params.max_new_tokens):
        if cancelled():
            raise Cancelled("sample was cancelled")
        logits = model.logits(hidden).float()
        if params.temperature == 0:
            chosen = logits.argmax(-1)
        else:
            scaled = logits if params.temperature == 1 else logits / params.temperature
            chosen = draw(torch.softmax(filter_logits(scaled, params.top_k, params.top_p), dim=-1), generator)
        chosen_logprob = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        if stop_ids.numel():
            # Rows that already stopped keep zeros; a row stops on (and keeps) its stop token.
            live = ~done
            tokens[:, step] = torch.where(live, chosen, torch.zeros_like(chosen))
            logprobs[:, step] = torch.where(live, chosen_logprob, torch.zeros_like(chosen_logprob))
            stopped = live & (chosen[:, None] == stop_ids[None, :]).any(-1)
            lengths.masked_fill_(stopped, step + 1)
            done |= stopped
            if bool(done.all()):
                break
        else:
            tokens[:, step] = chosen
            logprobs[:, step] = chosen_logprob
        if step + 1 == params.max_new_tokens:
            break
        if decoder is not None:
            hidden = decoder.step(chosen[:, None], next_pos, cache)[:, -1]
        elif params.use_cache:
            hidden = model.hidden_states(chosen[:, None], next_pos, pad, cache)[:, -1]
        else:
            # Recompute the whole prefix: what the cache saves, made measurable.
            ids = torch.cat((ids, chosen[:, None]), dim=1)
            positions = torch.cat((positions, next_pos), dim=1)
            hidden = model.hidden_states(ids, positions, pad)[:, -1]
        next_pos += 1

    stop_reasons = ["stop_token" if d else "length" for d in done.tolist()]
    return SampleResult(tokens.cpu(), lengths.cpu(), logprobs.cpu(), stop_reasons)


@torch.inference_mode()
def sequence_logprobs(model: LanguageModel, sequences: list[torch.Tensor]) -> list[torch.Tensor]:
    """Teacher-forced log p(token t | tokens < t) for t ≥ 1, one tensor per sequence, computed by
    training's own `token_logprobs`: a reference scored here (DPO's initial weights) has the same
    arithmetic as the policy's log-probs in forward_backward."""
    device = model.output_weight().device
    longest = max(len(s) for s in sequences)
    # Right padding: causal attention never looks ahead, so padded tail tokens need no mask.
    ids = torch.zeros(len(sequences), longest, dtype=torch.long, device=device)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = s.to(device)
    if longest < 2:
        return [torch.zeros(0) for _ in sequences]
    scores = token_logprobs(model, ids, with_entropy=False)[0]
    return [scores[row, : len(s) - 1].cpu() for row, s in enumerate(sequences)]