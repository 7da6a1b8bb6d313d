import math

import pytest
import torch
from bridge_wire import llama_config, qwen2_config, random_model
from thinkcells_bridge import sampling
from thinkcells_bridge.sampling import Cancelled, SampleParams, filter_logits, left_pad, sample, sequence_logprobs
from thinkcells_bridge.training import token_logprobs

NEG_INF = float("-inf")


@pytest.fixture(scope="module")
def model():
    return random_model(llama_config(), seed=21)


def prompts():
    g = torch.Generator().manual_seed(5)
    return [torch.randint(3, 97, (n,), generator=g) for n in (4, 7, 1)]


def params(**overrides):
    base = dict(n=1, max_new_tokens=8, temperature=0.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=None)
    base.update(overrides)
    return SampleParams(**base)


@torch.no_grad()
def next_logits(model, seq):
    ids = seq[None, :]
    positions = torch.arange(len(seq))[None, :]
    return model.logits(model.hidden_states(ids, positions, torch.zeros(1, dtype=torch.long)))[0, -1]


def greedy_chain(model, prompt, steps):
    seq, out = prompt.clone(), []
    for _ in range(steps):
        token = int(next_logits(model, seq).argmax())
        out.append(token)
        seq = torch.cat([seq, torch.tensor([token])])
    return out


def test_left_pad():
    ids, pad = left_pad([torch.tensor([5, 6]), torch.tensor([7, 8, 9, 10]), torch.tensor([3])], "cpu")
    assert ids.tolist() == [[0, 0, 5, 6], [7, 8, 9, 10], [0, 0, 0, 3]]
    assert pad.tolist() == [2, 0, 3]


@pytest.mark.parametrize("config", [llama_config(), qwen2_config()], ids=["llama", "qwen2"])
def test_greedy_is_the_argmax_chain(config):
    m = random_model(config, seed=22)
    ps = prompts()
    result = sample(m, ps, params(max_new_tokens=10))
    assert result.tokens.dtype == torch.int32 and result.tokens.shape == (3, 10)
    assert result.lengths.dtype == torch.int32 and result.lengths.tolist() == [10, 10, 10]
    assert result.stop_reasons == ["length"] * 3
    for row, p in enumerate(ps):
        assert result.tokens[row].tolist() == greedy_chain(m, p, 10), row


def test_n_samples_are_prompt_major(model):
    ps = prompts()
    chains = [greedy_chain(model, p, 6) for p in ps]
    assert len({tuple(c) for c in chains}) == 3  # the prompts are distinguishable
    result = sample(model, ps, params(n=4, max_new_tokens=6))
    assert result.tokens.shape == (12, 6)
    for row in range(12):
        assert result.tokens[row].tolist() == chains[row // 4], row
    # Sampled rows also group by prompt: the first token's distribution is the prompt's.
    sampled = sample(model, ps, params(n=3, max_new_tokens=1, temperature=1.0, seed=0))
    for row in range(9):
        probs = torch.softmax(next_logits(model, ps[row // 3]), -1)
        assert math.isclose(
            sampled.logprobs[row, 0].item(), math.log(probs[sampled.tokens[row, 0]].item()), abs_tol=1e-5
        )


def test_seeds_are_reproducible(model):
    ps = prompts()
    p = params(n=2, max_new_tokens=12, temperature=1.0, seed=1234)
    a, b = sample(model, ps, p), sample(model, ps, p)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    c = sample(model, ps, params(n=2, max_new_tokens=12, temperature=1.0, seed=4321))
    assert not torch.equal(a.tokens, c.tokens)
    # Rows of the same prompt differ too (each row draws its own tokens).
    assert not torch.equal(a.tokens[0], a.tokens[1])


def test_stop_tokens_end_rows(model):
    ps = prompts()[:2]
    free = sample(model, ps, params(max_new_tokens=12, temperature=1.0, seed=7))
    row0, row1 = free.tokens[0].tolist(), free.tokens[1].tolist()
    # A stop token that row 0 produces early (first at index j) and row 1 never produces.
    candidates = [(row0.index(t), t) for t in row0[:-2] if t not in row1]
    assert candidates, (row0, row1)
    j, stop = min(candidates)

    result = sample(model, ps, params(max_new_tokens=12, temperature=1.0, seed=7, stop_token_ids=(stop, 96)))
    assert result.lengths.tolist() == [j + 1, 12]
    assert result.stop_reasons == ["stop_token", "length"]
    assert result.tokens[0, : j + 1].tolist() == row0[: j + 1]
    assert result.tokens[0, j].item() == stop
    assert result.tokens[0, j + 1 :].tolist() == [0] * (11 - j)
    assert result.logprobs[0, j + 1 :].tolist() == [0.0] * (11 - j)
    assert bool((result.logprobs[0, : j + 1] < 0).all())
    # The row that did not stop is unaffected by the other one stopping.
    assert result.tokens[1].tolist() == row1
    assert torch.allclose(result.logprobs[1], free.logprobs[1])


def test_all_rows_stopping_ends_early(model):
    ps = prompts()
    chains = [greedy_chain(model, p, 10) for p in ps]
    stops = tuple({c[1] for c in chains} | {c[0] for c in chains})
    result = sample(model, ps, params(max_new_tokens=10, stop_token_ids=stops))
    for row, chain in enumerate(chains):
        length = 1 if chain[0] in stops else 2
        assert result.lengths[row].item() == length
        assert result.tokens[row].tolist() == chain[:length] + [0] * (10 - length)
    assert result.stop_reasons == ["stop_token"] * 3


@torch.no_grad()
def teacher_forced_logits(model, seq):
    """The logits [len(seq) - 1, vocab] predicting seq[1:], from one forward pass."""
    positions = torch.arange(len(seq))[None, :]
    return model.logits(model.hidden_states(seq[None], positions, torch.zeros(1, dtype=torch.long)))[0, :-1]


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 0.9), (0.7, 0, 1.0), (0.0, 0, 1.0)])
def test_logprobs_are_those_of_the_sampled_distribution(model, temperature, top_k, top_p):
    """log_softmax(logits / T) of each sampled token, before top-k/top-p (TRL's π_θ at T);
    greedy decoding reports the T = 1 log-probs."""
    ps = prompts()
    p = params(n=2, max_new_tokens=9, temperature=temperature, top_k=top_k, top_p=top_p, seed=3, stop_token_ids=(5, 6))
    result = sample(model, ps, p)
    scale = temperature if temperature > 0 else 1.0
    for row in range(len(ps) * 2):
        prompt, length = ps[row // 2], result.lengths[row].item()
        completion = result.tokens[row, :length].long()
        logits = teacher_forced_logits(model, torch.cat([prompt, completion]))[-length:]
        at_t = torch.log_softmax(logits / scale, -1).gather(-1, completion[:, None]).squeeze(-1)
        assert torch.allclose(result.logprobs[row, :length], at_t, atol=1e-5), row
        # Training's own teacher-forced scoring at the same temperature agrees.
        (scores,) = sequence_logprobs(model, [torch.cat([prompt, completion])], temperature=scale)
        assert torch.allclose(result.logprobs[row, :length], scores[-length:], atol=1e-5), row
        if temperature not in (0.0, 1.0):
            at_one = torch.log_softmax(logits, -1).gather(-1, completion[:, None]).squeeze(-1)
            assert (result.logprobs[row, :length] - at_one).abs().max() > 1e-2, row


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_entropies_are_those_of_the_sampled_distribution(model, temperature):
    """With params.entropy: each step's entropy of softmax(logits / T) (T = 1 when greedy), the
    same number training's token_logprobs computes for that position; without, none."""
    ps = prompts()
    p = params(n=2, max_new_tokens=9, temperature=temperature, seed=3, stop_token_ids=(5, 6), entropy=True)
    result = sample(model, ps, p)
    assert sample(model, ps, params()).entropies is None
    scale = temperature if temperature > 0 else 1.0
    for row in range(len(ps) * 2):
        prompt, length = ps[row // 2], result.lengths[row].item()
        completion = result.tokens[row, :length].long()
        logp = torch.log_softmax(teacher_forced_logits(model, torch.cat([prompt, completion]))[-length:] / scale, -1)
        expected = -(logp.exp() * logp).sum(-1)
        assert torch.allclose(result.entropies[row, :length], expected, atol=1e-5), row
        assert not result.entropies[row, length:].any()
        seq = torch.cat([prompt, completion])[None]
        _, training_entropy, _ = token_logprobs(model, seq, with_entropy=True, temperature=scale)
        assert torch.allclose(result.entropies[row, :length], training_entropy[0, -length:], atol=1e-5), row


def shared_and_unshared(model, ps, **overrides):
    p = params(**overrides)
    return sample(model, ps, p), sample(model, ps, SampleParams(**{**p.__dict__, "share_prompts": False}))


@pytest.mark.parametrize("decoder", ["auto", "static", "hidden_states"])
@pytest.mark.parametrize("temperature,seed", [(0.0, None), (0.9, 11)])
def test_shared_prompts_sample_as_unshared_and_prefill_each_prompt_once(model, decoder, temperature, seed):
    ps = prompts()  # lengths 4, 7, 1: left-padded to 7
    shared, unshared = shared_and_unshared(
        model,
        ps,
        n=4,
        max_new_tokens=9,
        temperature=temperature,
        top_k=20,
        seed=seed,
        stop_token_ids=(4, 9),
        decoder=decoder,
    )
    assert shared.tokens.tolist() == unshared.tokens.tolist()
    assert shared.lengths.tolist() == unshared.lengths.tolist()
    assert shared.stop_reasons == unshared.stop_reasons
    assert torch.allclose(shared.logprobs, unshared.logprobs, atol=1e-5)
    assert (shared.prefill_tokens, unshared.prefill_tokens) == (3 * 7, 3 * 4 * 7)


def test_prefill_tokens_read_prompts_times_length(model):
    """P prompts of length L, G samples each: P·L prefill tokens, not P·G·L."""
    g = torch.Generator().manual_seed(8)
    ps = [torch.randint(3, 97, (6,), generator=g) for _ in range(5)]
    shared, unshared = shared_and_unshared(model, ps, n=8, max_new_tokens=3, temperature=1.0, seed=2)
    assert shared.prefill_tokens == 5 * 6 and unshared.prefill_tokens == 5 * 8 * 6
    assert shared.tokens.tolist() == unshared.tokens.tolist()
    # n = 1 and the uncached path have nothing to share.
    assert sample(model, ps, params(max_new_tokens=2)).prefill_tokens == 5 * 6
    assert sample(model, ps, params(n=3, max_new_tokens=2, use_cache=False)).prefill_tokens == 5 * 3 * 6


def test_top_k_samples_only_among_top_k(model):
    ps = prompts()[:1]
    result = sample(model, ps, params(n=16, max_new_tokens=1, temperature=5.0, top_k=3, seed=0))
    allowed = set(torch.topk(next_logits(model, ps[0]), 3).indices.tolist())
    drawn = set(result.tokens[:, 0].tolist())
    assert drawn <= allowed and len(drawn) >= 2


def test_filter_logits_top_k():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, -1.0, 4.0, 2.5]])
    out = filter_logits(logits, top_k=2, top_p=1.0)
    assert out.tolist() == [[NEG_INF, 3.0, 2.0, NEG_INF], [NEG_INF, NEG_INF, 4.0, 2.5]]
    assert filter_logits(logits, top_k=1, top_p=1.0)[1].tolist() == [NEG_INF, NEG_INF, 4.0, NEG_INF]


def test_filter_logits_top_p():
    # Probabilities 0.5, 0.3, 0.15, 0.05, scrambled differently in two rows.
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3], [0.3, 0.05, 0.15, 0.5]])
    logits = probs.log()
    keep = lambda p: (filter_logits(logits, top_k=0, top_p=p) > NEG_INF).tolist()  # noqa: E731
    # Smallest prefix (by descending probability) whose mass reaches p.
    assert keep(0.4) == [[False, True, False, False], [False, False, False, True]]  # 0.5
    assert keep(0.7) == [[False, True, False, True], [True, False, False, True]]  # 0.5+0.3
    assert keep(0.9) == [[True, True, False, True], [True, False, True, True]]  # +0.15 = 0.95
    assert keep(0.99) == [[True] * 4] * 2
    # Kept logits are unchanged.
    out = filter_logits(logits, top_k=0, top_p=0.7)
    assert out[0, 1] == logits[0, 1] and out[1, 0] == logits[1, 0]


def test_filter_logits_top_k_then_top_p_renormalizes():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    # After top_k=2 the kept mass renormalizes to 0.625 / 0.375: top_p=0.6 keeps only the first.
    assert (filter_logits(logits, top_k=2, top_p=0.6) > NEG_INF).tolist() == [[True, False, False, False]]
    assert (filter_logits(logits, top_k=2, top_p=0.7) > NEG_INF).tolist() == [[True, True, False, False]]


def test_filter_logits_no_limits_keep_everything():
    logits = torch.randn(3, 11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filter_logits(logits, top_k=0, top_p=1.0), logits)
    assert torch.equal(filter_logits(logits, top_k=11, top_p=1.0), logits)
    assert torch.equal(filter_logits(logits, top_k=50, top_p=1.0), logits)


def test_sequence_logprobs_batch_equals_single(model):
    g = torch.Generator().manual_seed(9)
    seqs = [torch.randint(0, 97, (n,), generator=g) for n in (6, 1, 11, 3)]
    batched = sequence_logprobs(model, seqs)
    assert [len(s) for s in batched] == [5, 0, 10, 2]
    for seq, scores in zip(seqs, batched):
        (alone,) = sequence_logprobs(model, [seq])
        assert torch.allclose(scores, alone, atol=1e-5)
    # Independently: log_softmax of the next-token logits at every prefix of the longest.
    seq = seqs[2]
    for t in range(1, len(seq)):
        expected = torch.log_softmax(next_logits(model, seq[:t]), -1)[seq[t]]
        assert math.isclose(batched[2][t - 1].item(), expected.item(), abs_tol=1e-5)


def test_cancelled_raises(model):
    with pytest.raises(Cancelled):
        sample(model, prompts(), params(), cancelled=lambda: True)
    calls = []

    def cancel_on_third():
        calls.append(1)
        return len(calls) == 3

    with pytest.raises(sampling.Cancelled, match="cancelled"):
        sample(model, prompts(), params(max_new_tokens=50), cancelled=cancel_on_third)
    assert len(calls) == 3  # checked before every step, and nothing ran past the cancel


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (0.9, 11)])
def test_without_cache_gives_the_same_samples(model, temperature, seed):
    ps = prompts()
    p = dict(n=2, max_new_tokens=7, temperature=temperature, top_k=20, seed=seed, stop_token_ids=(4, 9))
    cached = sample(model, ps, params(**p))
    uncached = sample(model, ps, params(**p, use_cache=False))
    assert uncached.tokens.tolist() == cached.tokens.tolist()
    assert uncached.lengths.tolist() == cached.lengths.tolist()
    assert uncached.stop_reasons == cached.stop_reasons
    assert torch.allclose(uncached.logprobs, cached.logprobs, atol=1e-5)


def test_draw_follows_the_distribution_and_never_picks_zero_probability():
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    g = torch.Generator().manual_seed(0)
    draws = sampling.draw(probs.expand(40_000, -1), g)
    assert draws.shape == (40_000,)
    counts = torch.bincount(draws, minlength=6).float() / 40_000
    assert counts[[0, 2, 5]].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(counts, probs, atol=0.01), counts
    # Rows are independent distributions, and unnormalized rows are fine.
    rows = torch.tensor([[0.0, 0.0, 2.0], [5.0, 0.0, 0.0]])
    assert sampling.draw(rows, g).tolist() == [2, 0]
    # Same generator state, same draws.
    a = sampling.draw(probs.expand(50, -1), torch.Generator().manual_seed(3))
    b = sampling.draw(probs.expand(50, -1), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_training_works_after_sampling_in_inference_mode():
    """Sampling runs under torch.inference_mode; what it leaves on the model (the RoPE table,
    an inference tensor) must still serve a forward/backward pass afterwards."""
    m = random_model(llama_config(), seed=21)
    sample(m, [torch.tensor([1, 2, 3])], params(max_new_tokens=4))
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    hidden = m.hidden_states(ids, torch.arange(5)[None], torch.zeros(1, dtype=torch.long))
    loss = torch.nn.functional.cross_entropy(m.logits(hidden)[0, :-1], ids[0, 1:])
    loss.backward()
    assert m.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert torch.isfinite(m.model.layers[0].self_attn.q_proj.weight.grad).all()
