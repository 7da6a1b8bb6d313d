"""TRL's own loss code as the oracle for losses.py (issue 16, item 4).

Both sides differentiate the same parameters of one tiny transformers Llama on one fixed batch
(token ids, masks, old log-probs, advantages, a reference model's log-probs):

- TRL (pinned 1.16.0) runs `GRPOTrainer._compute_loss` / `DPOTrainer._compute_loss` unchanged,
  on a trainer made with `object.__new__` holding just the attributes those methods read; its
  per-token log-probs come from its own fused LM head (`add_fused_lm_head`), as in training.
- thinkcells runs `training.token_logprobs` (through a 3-method adapter over the same model)
  and the pure functions of `losses.py`, with the arguments the TypeScript trainer sends
  (cells-lib/grpo/trainer.ts: numTokens, numSequences, constant = B × maxNewTokens).

TRL loss_type ↔ thinkcells aggregation: grpo ↔ seq_mean_token_mean, bnpo and dapo ↔ token_mean,
dr_grpo ↔ seq_mean_token_sum_norm; importance_sampling_level ↔ ratio_level. Loss values agree
to ~1e-7 and every parameter's gradient to float32 rounding. Where thinkcells differs on purpose
the difference is asserted exactly: `bnpo` under gradient accumulation (TRL averages the
micro-batches' own token means, thinkcells divides by the whole batch's token count); the
defaults of `constant` and `num_sequences` when the client sends none (the TypeScript trainer
always sends them); and, a metric only, GSPO's clip fraction (TRL per sequence, thinkcells per
token).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import transformers
from thinkcells_bridge import losses
from thinkcells_bridge.training import token_logprobs

# Pinned in gpu-bridge/requirements.txt, group [test]: the oracle is part of the suite, never skipped.
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

# TRL's DPO loss wraps its reference pass in disable_gradient_checkpointing, which reads a property
# transformers 5 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

VOCAB, P, C = 40, 3, 5  # vocabulary, prompt length, padded completion length
MAX_COMPLETION = 6  # GRPOConfig.max_completion_length (≥ C: the batch's own padding is shorter)
EPS_LOW, EPS_HIGH, BETA = 0.2, 0.28, 0.04  # clip-higher: ε_low ≠ ε_high; a KL term
COMPLETION_MASK = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
ADVANTAGES = [1.0, -0.7, 0.4, -1.2]
# old = logp − (row offset + noise): sequence ratios ≈ e^.3 (A > 0: clipped above), e^-.3 (A < 0:
# clipped below), e^.22 (inside 1 + ε_high, outside 1 + ε_low: only clip-higher keeps it), e^.3
# (A < 0: the min keeps the unclipped term). Token ratios scatter around these (zero-mean noise).
ROW_OFFSET = [0.3, -0.3, 0.22, 0.3]
LOSS_TYPES = {
    "grpo": "seq_mean_token_mean",
    "bnpo": "token_mean",
    "dr_grpo": "seq_mean_token_sum_norm",
    "dapo": "token_mean",
}


class _Accelerator:
    """What the two _compute_loss methods ask of accelerate: one process, no autocast."""

    num_processes = 1
    is_main_process = True
    sync_gradients = True
    device = torch.device("cpu")

    def autocast(self):
        return contextlib.nullcontext()

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


class _AsLanguageModel:
    """The part of thinkcells' LanguageModel that training.token_logprobs uses, over a HF model."""

    def __init__(self, hf):
        self.hf = hf
        self.config = hf.config  # its vocab_size sizes the log-prob chunks

    def hidden_states(self, input_ids, positions, pad, cache=None, checkpoint_layers=False, segments=None):
        assert not pad.any() and segments is None  # right padding only: causal attention never reads it
        return self.hf.model(input_ids=input_ids, position_ids=positions).last_hidden_state

    def logits(self, hidden):
        return self.hf.lm_head(hidden)


def _tiny_llama(seed: int):
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).float()
    with torch.no_grad():  # larger than the 0.02 init so that the log-probs are far from uniform
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.4)
    return model


def _setup(temperature: float = 1.0):
    """The batch, and both models with TRL's fused head, whose log-probs are those of
    softmax(logits / temperature) as in GRPOTrainer (its `temperature` argument)."""
    policy, ref = _tiny_llama(0), _tiny_llama(1)
    # The policy gets every field either trainer asks its fused head for; the reference only log_probs.
    add_fused_lm_head(policy, temperature=temperature, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    add_fused_lm_head(ref, temperature=temperature)
    policy.train()
    ref.eval()
    g = torch.Generator().manual_seed(123)
    b = len(COMPLETION_MASK)
    prompt_ids = torch.randint(1, VOCAB, (b, P), generator=g)
    completion_mask = torch.tensor(COMPLETION_MASK)
    completion_ids = torch.randint(1, VOCAB, (b, C), generator=g).masked_fill(completion_mask == 0, 0)
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    with torch.no_grad():
        current = token_logprobs(_AsLanguageModel(policy), ids, False, temperature=temperature)[0][:, P - 1 :]
        ref_lp = token_logprobs(_AsLanguageModel(ref), ids, False, temperature=temperature)[0][:, P - 1 :]
    noise = 0.15 * torch.randn(b, C, generator=g) * completion_mask
    noise -= (noise.sum(-1) / completion_mask.sum(-1))[:, None]  # zero mean: sequence ratios are e^ROW_OFFSET
    old = (current - torch.tensor(ROW_OFFSET)[:, None] - noise) * completion_mask
    return SimpleNamespace(
        policy=policy,
        ref=ref,
        prompt_ids=prompt_ids,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        ids=ids,
        old=old,
        ref_logprobs=ref_lp * completion_mask,
        advantages=torch.tensor(ADVANTAGES),
        temperature=temperature,
    )


@pytest.fixture(scope="module")
def setup():
    return _setup()


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _assert_same_grads(a, b, atol=1e-7):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=atol, msg=lambda m, n=name: f"{n}: {m}")
    assert any(g.abs().max() > 1e-3 for g in a.values())  # not a vacuous comparison of zeros


# ---- GRPO family ------------------------------------------------------------------------------


def _grpo_trainer(s, loss_type, level, accumulation=1, eps_high=EPS_HIGH):
    t = object.__new__(GRPOTrainer)
    t.model, t.accelerator = s.policy, _Accelerator()
    t.args = SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=accumulation, report_to=[])
    t.state = SimpleNamespace(global_step=0)
    t.beta, t.epsilon_low, t.epsilon_high = BETA, EPS_LOW, eps_high
    t.loss_type, t.importance_sampling_level, t.max_completion_length = loss_type, level, MAX_COMPLETION
    t.current_gradient_accumulation_steps = accumulation
    t.top_entropy_quantile, t.off_policy_mask_threshold = 1.0, None
    t.use_vllm, t.vllm_importance_sampling_correction = False, False
    t._entropy_bonus_enabled, t.aux_loss_enabled = False, False
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return t


def _trl_grpo(s, rows, loss_type, level, accumulation=1, num_items=None, mask=None, eps_high=EPS_HIGH):
    """TRL's loss and gradients on the rows `rows` of the batch (one micro-batch)."""
    t = _grpo_trainer(s, loss_type, level, accumulation, eps_high)
    completion_mask = s.completion_mask[rows] if mask is None else mask[rows]
    inputs = {
        "prompt_ids": s.prompt_ids[rows],
        "prompt_mask": torch.ones_like(s.prompt_ids[rows]),
        "completion_ids": s.completion_ids[rows],
        "completion_mask": completion_mask,
        "old_per_token_logps": s.old[rows],
        "ref_per_token_logps": s.ref_logprobs[rows],
        "advantages": s.advantages[rows],
        # dapo's normaliser: the generation batch's counted tokens (here: the whole batch's)
        "num_items_in_batch": torch.tensor(float(completion_mask.sum() if num_items is None else num_items)),
    }
    s.policy.zero_grad()
    loss = t._compute_loss(s.policy, inputs)
    loss.backward()
    return loss.item(), _grads(s.policy), t._metrics["train"]


def _thinkcells_pg(s, rows, aggregation, level, mask=None, **normalisers):
    """thinkcells' loss on the same rows, laid out as the bridge does: [B, T−1] over all positions,
    prompt positions masked out."""
    ids = s.ids[rows]
    b = ids.shape[0]

    def full(completion_part):  # completion columns [B, C] → predicted positions [B, P + C − 1]
        return torch.cat([torch.zeros(b, P - 1), completion_part.float()], dim=1)

    completion_mask = s.completion_mask if mask is None else mask
    s.policy.zero_grad()
    logp, entropy, _ = token_logprobs(_AsLanguageModel(s.policy), ids, with_entropy=True, temperature=s.temperature)
    loss, metrics = losses.policy_gradient(
        logp,
        full(s.old[rows]),
        s.advantages[rows],
        full(completion_mask[rows]),
        eps_low=EPS_LOW,
        eps_high=EPS_HIGH,
        ratio_level=level,
        aggregation=aggregation,
        ref_logprobs=full(s.ref_logprobs[rows]),
        beta=BETA,
        entropy=entropy,
        **normalisers,
    )
    loss.backward()
    return loss.item(), _grads(s.policy), metrics


ALL = slice(None)


def _bridge_normalisers(s, rows=ALL):
    """What cells-lib/grpo/trainer.ts sends for the (mini-)batch `rows`."""
    n = s.completion_mask[rows].shape[0]
    return {"num_tokens": float(s.completion_mask[rows].sum()), "num_sequences": n, "constant": n * MAX_COMPLETION}


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_type", list(LOSS_TYPES))
def test_policy_gradient_equals_trl(setup, loss_type, level):
    s = setup
    trl_loss, trl_grads, trl_metrics = _trl_grpo(s, ALL, loss_type, level)
    tc_loss, tc_grads, tc_metrics = _thinkcells_pg(s, ALL, LOSS_TYPES[loss_type], level, **_bridge_normalisers(s))
    assert tc_loss == pytest.approx(trl_loss, abs=1e-6, rel=1e-6)
    _assert_same_grads(tc_grads, trl_grads)
    # The batch exercises both clip sides and the KL term, so the comparison above covers them.
    clipped = trl_metrics["clip_ratio/region_mean"][0]
    assert 0 < clipped < 1 and trl_metrics["clip_ratio/low_mean"][0] > 0 and trl_metrics["clip_ratio/high_mean"][0] > 0
    assert tc_metrics["kl"] == pytest.approx(trl_metrics["kl"][0], abs=1e-6) and tc_metrics["kl"] > 1e-2
    assert tc_metrics["entropy"] == pytest.approx(trl_metrics["entropy"][0], abs=1e-5)
    if level == "token":
        assert tc_metrics["clip_fraction"] == pytest.approx(clipped, abs=1e-6)
    else:  # a metric only: rows 0 and 1 (5 and 3 of 14 tokens) are clipped; TRL counts sequences, thinkcells tokens
        assert clipped == pytest.approx(2 / 4) and tc_metrics["clip_fraction"] == pytest.approx(8 / 14)


def test_policy_gradient_at_a_sampling_temperature_equals_trl():
    """At temperature 0.7 TRL scores the policy (and the reference, and the entropy) under
    softmax(logits / 0.7), the distribution it sampled from; thinkcells' loss does the same."""
    s = _setup(temperature=0.7)
    trl_loss, trl_grads, trl_metrics = _trl_grpo(s, ALL, "grpo", "token")
    tc_loss, tc_grads, tc_metrics = _thinkcells_pg(s, ALL, "seq_mean_token_mean", "token", **_bridge_normalisers(s))
    assert tc_loss == pytest.approx(trl_loss, abs=1e-6, rel=1e-6)
    # TRL multiplies the logits by 1/0.7, thinkcells divides by 0.7 (as transformers' sampling
    # does): the gradients, 1/0.7 larger, round a little differently.
    _assert_same_grads(tc_grads, trl_grads, atol=5e-7)
    assert tc_metrics["kl"] == pytest.approx(trl_metrics["kl"][0], abs=1e-6)
    assert tc_metrics["entropy"] == pytest.approx(trl_metrics["entropy"][0], abs=1e-5)


def test_logprobs_at_a_temperature_are_those_of_the_scaled_logits():
    """token_logprobs at 0.7 (whole or in chunks) = TRL's fused head at 0.7 = transformers'
    log_softmax(logits / 0.7), and differ from the model's own (temperature 1) log-probs."""
    s = _setup(temperature=0.7)
    ids = s.ids
    with torch.no_grad():
        trl = s.policy(input_ids=ids, labels=ids, fused_lm_head=True)
        logits = s.policy(input_ids=ids).logits[:, :-1]
        scaled = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        plain = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        model = _AsLanguageModel(s.policy)
        for chunk in (0, 3):
            ours, entropy, _ = token_logprobs(model, ids, True, temperature=0.7, chunk_tokens=chunk)
            torch.testing.assert_close(ours, trl.log_probs, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(ours, scaled, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(entropy, trl.entropy, rtol=1e-5, atol=1e-6)
    assert (scaled - plain).abs().max() > 0.1


def test_clip_higher_matters_in_this_batch(setup):
    """ε_high is really tested: with a symmetric clip TRL's own loss changes."""
    s = setup
    loss_asym = _trl_grpo(s, ALL, "grpo", "sequence")[0]
    loss_sym = _trl_grpo(s, ALL, "grpo", "sequence", eps_high=EPS_LOW)[0]
    assert abs(loss_asym - loss_sym) > 1e-3


@pytest.mark.parametrize("loss_type", list(LOSS_TYPES))
def test_micro_batches_against_trl_gradient_accumulation(setup, loss_type):
    """Two micro-batches of two sequences, gradients summed. TRL: current_gradient_accumulation_steps
    = steps_per_generation = 2, num_items_in_batch = the whole batch's tokens. thinkcells: each
    micro-batch gets the whole batch's normalisers, so the sum is the one-batch loss.

    grpo, dr_grpo, dapo: the same as TRL. bnpo: TRL divides each micro-batch by its own token
    count (and by 2), thinkcells by the whole batch's: the exact global token mean DAPO's
    normaliser also gives. Asserted: TRL's bnpo = Σ_k (token mean of micro-batch k) / 2."""
    s = setup
    halves = [slice(0, 2), slice(2, 4)]  # 9 and 7 counted tokens: unequal, so bnpo ≠ token mean
    aggregation = LOSS_TYPES[loss_type]
    total = float(s.completion_mask.sum())
    trl_parts = [_trl_grpo(s, h, loss_type, "token", accumulation=2, num_items=total) for h in halves]
    tc_parts = [_thinkcells_pg(s, h, aggregation, "token", **_bridge_normalisers(s)) for h in halves]
    one_batch = _thinkcells_pg(s, ALL, aggregation, "token", **_bridge_normalisers(s))

    def summed(parts):
        return sum(p[0] for p in parts), {n: sum(p[1][n] for p in parts) for n in parts[0][1]}

    trl_loss, trl_grads = summed(trl_parts)
    tc_loss, tc_grads = summed(tc_parts)
    assert tc_loss == pytest.approx(one_batch[0], abs=1e-6)
    _assert_same_grads(tc_grads, one_batch[1])
    if loss_type != "bnpo":
        assert tc_loss == pytest.approx(trl_loss, abs=1e-6)
        _assert_same_grads(tc_grads, trl_grads)
    else:
        local = [_thinkcells_pg(s, h, "token_mean", "token") for h in halves]  # each micro-batch's own mean
        local_loss, local_grads = summed(local)
        assert trl_loss == pytest.approx(local_loss / 2, abs=1e-6)
        _assert_same_grads({n: g / 2 for n, g in local_grads.items()}, trl_grads)
        assert abs(trl_loss - tc_loss) > 1e-3  # the difference is real in this batch


def test_defaults_when_the_normalisers_are_not_sent(setup):
    """The protocol's num_sequences / constant may be null; the TypeScript trainer always sends
    them (B and B × maxNewTokens, as TRL uses), and then thinkcells equals TRL. The defaults differ:

    - dr_grpo: the default constant is B × the per-token arrays' width (prompt included: the
      bridge does not know the maximum completion length); TRL's is B × max_completion_length.
    - grpo with a row that has no counted token (TRL: a tool mask over a whole completion): the
      default num_sequences counts only the rows that have a mean; TRL divides by all B rows."""
    s = setup
    width = P + C - 1
    trl_dr = _trl_grpo(s, ALL, "dr_grpo", "token")[0]
    tc_dr = _thinkcells_pg(s, ALL, "seq_mean_token_sum_norm", "token")[0]
    assert tc_dr * (4 * width) == pytest.approx(trl_dr * (4 * MAX_COMPLETION), abs=1e-6)

    mask = s.completion_mask.clone()
    mask[1] = 0
    trl_loss, trl_grads, _ = _trl_grpo(s, ALL, "grpo", "token", mask=mask)
    tc_b = _thinkcells_pg(s, ALL, "seq_mean_token_mean", "token", mask=mask, num_sequences=4)
    tc_default = _thinkcells_pg(s, ALL, "seq_mean_token_mean", "token", mask=mask)
    assert tc_b[0] == pytest.approx(trl_loss, abs=1e-6)
    _assert_same_grads(tc_b[1], trl_grads)
    assert tc_default[0] * 3 == pytest.approx(trl_loss * 4, abs=1e-6)


# ---- DPO --------------------------------------------------------------------------------------

DPO_BETA = 0.5
# (prompt, chosen, rejected) lengths; rows are right-padded to one width.
DPO_PAIRS = [(3, 4, 2), (2, 3, 5), (4, 2, 3)]


def test_dpo_sigmoid_equals_trl(setup):
    s = setup
    g = torch.Generator().manual_seed(7)
    seqs, completion_masks = [], []
    for prompt_len, *completion_lens in DPO_PAIRS:
        prompt = torch.randint(1, VOCAB, (prompt_len,), generator=g)
        for n in completion_lens:  # chosen, then rejected
            seqs.append(torch.cat([prompt, torch.randint(1, VOCAB, (n,), generator=g)]))
            completion_masks.append(torch.tensor([0] * prompt_len + [1] * n))
    width = max(len(x) for x in seqs)

    def pad(x):
        return torch.cat([x, x.new_zeros(width - len(x))])

    ids = torch.stack([pad(x) for x in seqs])  # thinkcells: (chosen, rejected) interleaved
    cmask = torch.stack([pad(m) for m in completion_masks])
    attention = torch.stack([pad(torch.ones(len(x), dtype=torch.long)) for x in seqs])
    trl_order = torch.cat([torch.arange(0, len(seqs), 2), torch.arange(1, len(seqs), 2)])  # TRL: chosen…, rejected…

    t = object.__new__(DPOTrainer)
    t.model, t.ref_model, t.accelerator = s.policy, s.ref, _Accelerator()
    t.args = SimpleNamespace(gradient_checkpointing_kwargs=None, report_to=[])
    t.beta, t.label_smoothing, t.loss_types, t.loss_weights = DPO_BETA, 0.0, ["sigmoid"], [1.0]
    t.f_divergence_type, t.ld_alpha, t.precompute_ref_logps = "reverse_kl", None, False
    t.use_weighting, t.aux_loss_enabled = False, False
    t._metrics, t._total_train_tokens, t._tp_size = {"train": defaultdict(list), "eval": defaultdict(list)}, 0, 1
    inputs = {"input_ids": ids[trl_order], "attention_mask": attention[trl_order], "completion_mask": cmask[trl_order]}
    s.policy.zero_grad()
    trl_loss = t._compute_loss(s.policy, inputs, return_outputs=False)
    trl_loss.backward()
    trl_grads, m = _grads(s.policy), t._metrics["train"]

    # thinkcells, as training._dpo does (the reference log-probs come from the reference model)
    mask = cmask[:, 1:].float()
    s.policy.zero_grad()
    policy = losses.sequence_logprob_sums(token_logprobs(_AsLanguageModel(s.policy), ids, with_entropy=False)[0], mask)
    with torch.no_grad():
        ref = losses.sequence_logprob_sums(token_logprobs(_AsLanguageModel(s.ref), ids, with_entropy=False)[0], mask)
    tc_loss, tc_metrics = losses.dpo(policy[0::2], policy[1::2], ref[0::2], ref[1::2], beta=DPO_BETA)
    tc_loss.backward()

    assert tc_loss.item() == pytest.approx(trl_loss.item(), abs=1e-6, rel=1e-6)
    _assert_same_grads(_grads(s.policy), trl_grads)
    assert tc_metrics["reward_accuracy"] == m["rewards/accuracies"][0]
    assert 0 < tc_metrics["reward_accuracy"] < 1
    for ours, theirs in [
        ("reward_margin", "rewards/margins"),
        ("chosen_reward", "rewards/chosen"),
        ("rejected_reward", "rewards/rejected"),
    ]:
        assert tc_metrics[ours] == pytest.approx(m[theirs][0], abs=1e-6)
