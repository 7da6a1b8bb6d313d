"""Batched autoregressive sampling with a KV cache: one prefill per prompt, copied to its
samples' rows, then one-token steps (the C step where it applies, else static_decode's
fixed-shape step, else the model's hidden_states)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .language_model import LanguageModel
from .native_kernels import native_decoder
from .static_decode import decode_step
from .training import token_logprobs


class Cancelled(Exception):
    """The client cancelled the request."""


DECODERS = ("auto", "native", "static", "hidden_states")


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
    # Prefill each prompt once and copy its cache to its n rows; False prefills all P·n rows
    # (the samples are the same: for checks).
    share_prompts: bool = True
    # How the cached decode steps run: "auto" is the C step where it applies (native_kernels),
    # else the fixed-shape step (static_decode) for native models, else hidden_states;
    # "native", "static" and "hidden_states" force one (for checks and benchmarks: the samples
    # are the same).
    decoder: str = "auto"
    # Also return each step's entropy of softmax(logits / T) (one more pass over the vocabulary).
    entropy: bool = False


@dataclass
class SampleResult:
    tokens: torch.Tensor  # int32 [rows, max_new_tokens], 0 after each row's end
    lengths: torch.Tensor  # int32 [rows]
    # float32 [rows, max_new_tokens]: log_softmax(logits / T) of each token, T the temperature
    # (1 when greedy), before top-k/top-p; 0 after each row's end.
    logprobs: torch.Tensor
    stop_reasons: list[str]
    prefill_tokens: int  # token positions the prompt prefill ran through the model, padding included
    # float32 [rows, max_new_tokens] with params.entropy: the entropy of the distribution each
    # token was drawn from (as logprobs: T, before top-k/top-p); None without.
    entropies: torch.Tensor | None = None


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


@dataclass
class Prefix:
    """The prompts run through the model, one row per sample (prompt-major)."""

    ids: torch.Tensor  # [rows, T] left-padded prompts
    positions: torch.Tensor  # [rows, T]
    pad: torch.Tensor  # [rows]
    cache: object | None  # the model's KV cache (new_cache), None without one
    hidden: torch.Tensor  # [rows, hidden] at each prompt's last token
    tokens: int  # token positions the prefill ran, padding included


def prefill(model: LanguageModel, prompts: list[torch.Tensor], params: SampleParams, device) -> Prefix:
    """Runs the prompts, each once where its n samples can share it (a cache to copy), and
    gives every sample its row: row r is sample r % n of prompt r // n."""
    shared = params.share_prompts and params.use_cache and params.n > 1
    rows = prompts if shared else [p for p in prompts for _ in range(params.n)]
    ids, pad = left_pad(rows, device)
    positions = (torch.arange(ids.shape[1], device=device)[None, :] - pad[:, None]).clamp(min=0)
    cache = None
    if params.use_cache:
        cache = model.new_cache(pad, ids.shape[1] + params.max_new_tokens, model.output_weight().dtype)
    hidden = model.hidden_states(ids, positions, pad, cache)[:, -1]
    prefix = Prefix(ids, positions, pad, cache, hidden, ids.numel())
    if shared:
        n = params.n
        prefix.ids, prefix.positions, prefix.pad, prefix.hidden = (
            t.repeat_interleave(n, dim=0) for t in (ids, positions, pad, hidden)
        )
        prefix.cache = cache.repeat_interleave(n)
    return prefix


def check_decoder(model: LanguageModel, params: SampleParams) -> None:
    if params.decoder not in DECODERS:
        raise ValueError(f"decoder: expected one of {', '.join(DECODERS)}, got {params.decoder!r}")
    if params.decoder == "static" and model.backend != "native":
        raise ValueError(f"decoder: 'static' needs a native model, this one's backend is {model.backend!r}")


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (tokens [B], positions [B, 1]) → hidden [B, hidden]


def decode_steps(model: LanguageModel, params: SampleParams, prefix: Prefix) -> Step:
    """The function that runs one new token per row, appending it to the prefix."""
    cache = prefix.cache
    if cache is None:
        return _recompute_steps(model, prefix)
    # One-token steps in C where that applies (Llama-shaped, CPU, fp32): per-op overhead, not
    # arithmetic, limits a small model's decode speed in eager PyTorch.
    native = native_decoder(model, forced=params.decoder == "native") if params.decoder in ("auto", "native") else None
    if params.decoder == "native" and native is None:
        raise ValueError("decoder: 'native' needs the C step, which does not apply to this model or machine")
    if native is not None:
        return lambda tokens, positions: native.step(tokens[:, None], positions, cache)[:, -1]
    if params.decoder == "hidden_states" or model.backend != "native":
        return lambda tokens, positions: model.hidden_states(tokens[:, None], positions, prefix.pad, cache)[:, -1]
    return _static_steps(model, cache)


def _static_steps(model, cache) -> Step:
    # The slot lives on the device and advances in place: no step reads it back to the host.
    slot = torch.tensor([cache.length], dtype=torch.long, device=cache.start.device)

    def step(tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden = decode_step(model, cache, tokens[:, None], positions, slot)[:, -1]
        slot.add_(1)
        cache.length += 1
        return hidden

    return step


def _recompute_steps(model, prefix: Prefix) -> Step:
    # Recompute the whole prefix every step: what the cache saves, made measurable.
    ids, positions = prefix.ids, prefix.positions

    def step(tokens: torch.Tensor, next_positions: torch.Tensor) -> torch.Tensor:
        nonlocal ids, positions
        ids = torch.cat((ids, tokens[:, None]), dim=1)
        positions = torch.cat((positions, next_positions), dim=1)
        return model.hidden_states(ids, positions, prefix.pad)[:, -1]

    return step


def choose(
    logits: torch.Tensor, params: SampleParams, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The next token of each row, its log-prob under the distribution it was drawn from:
    log_softmax(logits / T), before top-k/top-p, which is how training evaluates the policy
    (TRL's too); greedy (T = 0) gives the T = 1 log-probs; and with params.entropy that
    distribution's entropy."""
    scaled = logits if params.temperature in (0, 1) else logits / params.temperature
    if params.temperature == 0:
        chosen = logits.argmax(-1)
    else:
        chosen = draw(torch.softmax(filter_logits(scaled, params.top_k, params.top_p), dim=-1), generator)
    logp = torch.log_softmax(scaled, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1) if params.entropy else None
    return chosen, logp.gather(-1, chosen[:, None]).squeeze(-1), entropy


@torch.inference_mode()  # cheaper per op than no_grad: the decode loop is ~150 tiny ops a step
def sample(
    model: LanguageModel,
    prompts: list[torch.Tensor],
    params: SampleParams,
    cancelled: Callable[[], bool] = lambda: False,
) -> SampleResult:
    """params.n samples of each prompt, rows prompt-major (row r is sample r % n of prompt r // n)."""
    check_decoder(model, params)
    device = model.output_weight().device
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(params.seed)

    prefix = prefill(model, prompts, params, device)
    step_fn = decode_steps(model, params, prefix)
    hidden, next_pos = prefix.hidden, prefix.positions[:, -1:] + 1
    batch = hidden.shape[0]
    tokens = torch.zeros(batch, params.max_new_tokens, dtype=torch.int32, device=device)
    logprobs = torch.zeros(batch, params.max_new_tokens, dtype=torch.float32, device=device)
    entropies = torch.zeros_like(logprobs) if params.entropy else None
    lengths = torch.full((batch,), params.max_new_tokens, dtype=torch.int32, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(params.stop_token_ids, dtype=torch.long, device=device)

    for step in range(params.max_new_tokens):
        if cancelled():
            raise Cancelled("sample was cancelled")
        chosen, chosen_logprob, entropy = choose(model.logits(hidden).float(), params, generator)
        if stop_ids.numel():
            # Rows that already stopped keep zeros; a row stops on (and keeps) its stop token.
            live = ~done
            tokens[:, step] = torch.where(live, chosen, torch.zeros_like(chosen))
            logprobs[:, step] = torch.where(live, chosen_logprob, torch.zeros_like(chosen_logprob))
            if entropies is not None:
                entropies[:, step] = torch.where(live, entropy, torch.zeros_like(entropy))
            stopped = live & (chosen[:, None] == stop_ids[None, :]).any(-1)
            lengths.masked_fill_(stopped, step + 1)
            done |= stopped
            if bool(done.all()):
                break
        else:
            tokens[:, step] = chosen
            logprobs[:, step] = chosen_logprob
            if entropies is not None:
                entropies[:, step] = entropy
        if step + 1 == params.max_new_tokens:
            break
        hidden = step_fn(chosen, next_pos)
        next_pos += 1

    stop_reasons = ["stop_token" if d else "length" for d in done.tolist()]
    return SampleResult(
        tokens.cpu(),
        lengths.cpu(),
        logprobs.cpu(),
        stop_reasons,
        prefix.tokens,
        None if entropies is None else entropies.cpu(),
    )


@torch.inference_mode()
def sequence_logprobs(
    model: LanguageModel, sequences: list[torch.Tensor], temperature: float = 1.0
) -> list[torch.Tensor]:
    """Teacher-forced log p(token t | tokens < t) for t ≥ 1 under softmax(logits / temperature),
    one tensor per sequence, computed by training's own `token_logprobs`: a reference scored here
    (DPO's initial weights) has the same arithmetic as the policy's log-probs in forward_backward."""
    device = model.output_weight().device
    longest = max(len(s) for s in sequences)
    # Right padding: causal attention never looks ahead, so padded tail tokens need no mask.
    ids = torch.zeros(len(sequences), longest, dtype=torch.long, device=device)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = s.to(device)
    if longest < 2:
        return [torch.zeros(0) for _ in sequences]
    scores = token_logprobs(model, ids, with_entropy=False, temperature=temperature)[0]
    return [scores[row, : len(s) - 1].cpu() for row, s in enumerate(sequences)]
