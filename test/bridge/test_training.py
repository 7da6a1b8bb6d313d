"""forward_backward + optim_step + save/load state, in process (the bridge ops around them are
thin). The acceptance test through a fresh bridge is test/training.test.ts."""

import math

import pytest
import torch
from bridge_wire import llama_config, random_model
from thinkcells_bridge.lora import adapters_disabled, apply_lora
from thinkcells_bridge.losses import sequence_logprob_sums
from thinkcells_bridge.optim import AdamWConfig, Trainer
from thinkcells_bridge.sampling import SampleParams, sample
from thinkcells_bridge.state import StateError, load_state, read_state_meta, save_state
from thinkcells_bridge.training import BatchError, forward, forward_backward, pack, per_token, token_logprobs

CONFIG = AdamWConfig(lr=1e-2, weight_decay=0.01, max_grad_norm=1.0)


def batch(seed=0, rows=3, length=7, kind="cross_entropy"):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length - (r % 2) for r in range(rows)], dtype=torch.int32)
    ids = torch.randint(3, 97, (int(lengths.sum()),), generator=g, dtype=torch.int32)
    n = ids.numel()
    if kind == "cross_entropy":
        loss = {"kind": "cross_entropy", "weights": torch.ones(n), "num_tokens": None}
    elif kind == "policy_gradient":
        loss = {
            "kind": "policy_gradient",
            "mask": torch.ones(n),
            "old_logprobs": -torch.rand(n, generator=g) * 3,
            "advantages": torch.randn(rows, generator=g),
            "eps_low": 0.2,
            "eps_high": 0.28,
            "ratio_level": "token",
            "aggregation": "token_mean",
            "constant": None,
            "num_tokens": None,
            "num_sequences": None,
            "beta": 0.05,
            "entropy_coef": 0.0,
            "temperature": 1.0,
        }
    elif kind == "ppo":
        loss = {
            "kind": "ppo",
            "mask": torch.ones(n),
            "old_logprobs": -torch.rand(n, generator=g) * 3,
            "advantages": torch.randn(n, generator=g),
            "eps_low": 0.2,
            "eps_high": 0.2,
            "ratio_level": "token",
            "aggregation": "token_mean",
            "constant": None,
            "num_tokens": None,
            "num_sequences": None,
            "beta": 0.0,
            "entropy_coef": 0.01,
            "temperature": 1.0,
            "old_values": torch.randn(n, generator=g) * 0.1,
            "returns": torch.randn(n, generator=g),
            "value_clip": 0.2,
            "value_coef": 0.5,
        }
    else:
        loss = {"kind": "dpo", "mask": torch.ones(n), "beta": 0.1, "ref_logprobs": None}
    return {
        "token_ids": ids,
        "lengths": lengths,
        "example_lengths": None,
        "loss": loss,
        "loss_scale": 1.0,
        "gradient_checkpointing": False,
    }


def lora_model(seed=1, dropout=0.1):
    m = random_model(llama_config(), seed=seed).eval()
    torch.manual_seed(seed)
    apply_lora(m, rank=4, alpha=8, dropout=dropout, targets="all-linear")
    return m


def train(trainer, model, steps, first=0):
    losses = []
    for step in range(first, first + steps):
        out = forward_backward(model, trainer, batch(seed=step))
        trainer.optim_step(CONFIG)
        losses.append(out["loss"])
    return losses


def test_cross_entropy_matches_a_hand_computation():
    m = lora_model(dropout=0.0)
    b = batch(seed=3)
    ids = b["token_ids"].long()
    rows = torch.split(ids, b["lengths"].tolist())
    total, count = 0.0, 0
    with torch.no_grad():
        for seq in rows:
            t = len(seq)
            logits = m.logits(
                m.hidden_states(seq[None, :-1], torch.arange(t - 1)[None], torch.zeros(1, dtype=torch.long))
            )
            total += -torch.log_softmax(logits[0], -1).gather(-1, seq[1:, None]).sum().item()
            count += t - 1
    out = forward_backward(m, Trainer(m), b)
    assert out["tokens"] == count
    assert out["loss"] == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("kind", ["cross_entropy", "policy_gradient", "ppo", "dpo"])
def test_every_loss_kind_gives_finite_gradients_on_the_trainable_parameters_only(kind):
    m = lora_model()
    if kind == "ppo":
        m.add_value_head()  # trained in full beside the adapters
    out = forward_backward(m, Trainer(m), batch(seed=4, rows=4, kind=kind))
    assert math.isfinite(out["loss"]) and all(math.isfinite(v) for v in out["metrics"].values())
    for name, p in m.named_parameters():
        assert (p.grad is not None) == ("lora_" in name or name.startswith("value_head.")), name
    if kind == "ppo":
        metrics = out["metrics"]
        assert metrics["loss"] == pytest.approx(metrics["policy_loss"] + 0.5 * metrics["value_loss"], rel=1e-5)
        assert metrics["explained_variance"] <= 1.0
    if kind == "policy_gradient":
        assert out["metrics"]["kl"] >= 0 and "clip_fraction" in out["metrics"]
    if kind == "dpo":
        # Adapters start at B = 0: the policy is the reference, so Δ = 0 and nothing is "won".
        assert out["metrics"]["reward_accuracy"] == 0.0 and out["metrics"]["reward_margin"] == 0.0


@pytest.mark.parametrize("kind", ["cross_entropy", "policy_gradient", "ppo", "dpo"])
def test_forward_reports_what_forward_backward_does_and_leaves_the_gradients(kind):
    """The forward op (evaluation): forward_backward's loss and metrics without dropout, with no
    gradient and no trainer state touched."""
    m = lora_model(dropout=0.0)
    if kind == "ppo":
        m.add_value_head()
    b = batch(seed=5, rows=4, kind=kind)
    evaluated = forward(m, b)
    assert all(p.grad is None for p in m.parameters())
    assert not m.training
    trained = forward_backward(m, Trainer(m), b)
    assert evaluated["tokens"] == trained["tokens"]
    assert evaluated["loss"] == pytest.approx(trained["loss"], rel=1e-6)
    assert evaluated["metrics"] == pytest.approx(trained["metrics"], rel=1e-6, abs=1e-9)


def test_dpo_takes_given_reference_logprobs_as_its_own():
    """The reference's sequence log-probs sent with the batch give the loss and gradient the
    adapters-off pass gives, and need no adapters (full fine-tuning against the initial model)."""
    computed, given = lora_model(dropout=0.0), lora_model(dropout=0.0)
    b = batch(seed=7, rows=4, kind="dpo")
    with torch.no_grad(), adapters_disabled(given):
        logp = token_logprobs(given, pack(b["token_ids"], b["lengths"], "cpu"), with_entropy=False)[0]
    ref = sequence_logprob_sums(logp, per_token(b["loss"]["mask"], b["lengths"], "mask", "cpu"))
    expected = forward_backward(computed, Trainer(computed), b)
    out = forward_backward(given, Trainer(given), {**b, "loss": {**b["loss"], "ref_logprobs": ref}})
    assert out["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    for (name, p), q in zip(computed.named_parameters(), given.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-7), name
    full = random_model(llama_config(), seed=1).eval()
    assert math.isfinite(
        forward_backward(full, Trainer(full), {**b, "loss": {**b["loss"], "ref_logprobs": ref}})["loss"]
    )
    with pytest.raises(BatchError, match="ref_logprobs has 3 values for 4 sequences"):
        forward_backward(full, Trainer(full), {**b, "loss": {**b["loss"], "ref_logprobs": ref[:3]}})


def test_micro_batches_accumulate_to_the_whole_batch_gradient():
    whole, halves = lora_model(dropout=0.0), lora_model(dropout=0.0)
    b = batch(seed=5, rows=4)
    forward_backward(whole, Trainer(whole), b)
    sizes = b["lengths"].tolist()
    n_first = sum(sizes[:2])
    total_tokens = float(sum(n - 1 for n in sizes))
    for ids, lengths, weights in (
        (b["token_ids"][:n_first], b["lengths"][:2], b["loss"]["weights"][:n_first]),
        (b["token_ids"][n_first:], b["lengths"][2:], b["loss"]["weights"][n_first:]),
    ):
        forward_backward(
            halves,
            Trainer(halves),
            {
                "token_ids": ids,
                "lengths": lengths,
                "example_lengths": None,
                "loss_scale": 1.0,
                "gradient_checkpointing": False,
                "loss": {"kind": "cross_entropy", "weights": weights, "num_tokens": total_tokens},
            },
        )
    for (name, p), q in zip(whole.named_parameters(), halves.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_optim_step_updates_clips_and_reports():
    m = lora_model()
    trainer = Trainer(m)
    forward_backward(m, trainer, batch(seed=6))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    out = trainer.optim_step(AdamWConfig(lr=1e-2, max_grad_norm=1e-3))
    assert out["step"] == 1 and not out["skipped"] and out["grad_norm"] > 1e-3
    for n, p in m.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, before[n]), n  # the base stays frozen
        elif "lora_B" in n:
            assert not torch.equal(p, before[n]), n  # (A's gradient is 0 while B is 0)
    assert all(p.grad is None for p in m.parameters())
    with pytest.raises(ValueError, match="no gradients to apply"):
        trainer.optim_step(CONFIG)


def test_non_finite_loss_or_gradient_skips_the_step_and_keeps_the_weights():
    m = lora_model()
    trainer = Trainer(m)
    forward_backward(m, trainer, batch(seed=7))
    lora_a = next(p for n, p in m.named_parameters() if "lora_A" in n)
    lora_a.grad[0, 0] = float("nan")
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    out = trainer.optim_step(CONFIG)
    assert out["skipped"] and "non-finite gradient norm" in out["reason"] and out["step"] == 0
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())
    # A non-finite loss: no backward at all, and the next step is skipped with the reason.
    b = batch(seed=8)
    b["loss"]["weights"][3] = float("inf")
    assert not math.isfinite(forward_backward(m, trainer, b)["loss"])
    forward_backward(m, trainer, batch(seed=9))
    out = trainer.optim_step(CONFIG)
    assert out["skipped"] and "non-finite loss" in out["reason"]
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())
    # The next clean step goes through.
    forward_backward(m, trainer, batch(seed=10))
    assert not trainer.optim_step(CONFIG)["skipped"]


def test_resume_is_bit_identical(tmp_path):
    """6 steps straight == 3 steps, save, a fresh model, load, 3 steps (dropout on: the RNG
    state is part of what is saved)."""
    straight_model = lora_model()
    straight = train(Trainer(straight_model), straight_model, 6)

    first_model = lora_model()
    first = Trainer(first_model)
    resumed = train(first, first_model, 3)
    lora = {"rank": 4, "alpha": 8, "dropout": 0.1, "targets": "all-linear"}
    save_state(str(tmp_path / "state"), first, lora)
    torch.manual_seed(1234)  # disturb the global RNG: loading must restore it

    fresh = random_model(llama_config(), seed=1).eval()
    apply_lora(fresh, **lora)
    trainer = Trainer(fresh)
    path, meta = read_state_meta(str(tmp_path / "state"))
    assert meta["lora"] == lora and meta["step"] == 3
    load_state(path, meta, trainer)
    resumed += train(trainer, fresh, 3, first=3)
    assert resumed == straight  # exact equality, not approx


def test_an_interrupted_save_leaves_the_previous_state(tmp_path, monkeypatch):
    m = lora_model()
    trainer = Trainer(m)
    train(trainer, m, 1)
    target = str(tmp_path / "state")
    save_state(target, trainer, None)
    train(trainer, m, 1, first=1)
    import thinkcells_bridge.state as state_mod

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(state_mod, "write_safetensors", crash)
    with pytest.raises(OSError, match="disk full"):
        save_state(target, trainer, None)
    path, meta = read_state_meta(target)
    assert meta["step"] == 1  # the previous save, whole


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(StateError, match="no training state here"):
        read_state_meta(str(tmp_path / "nothing"))
    m = lora_model()
    trainer = Trainer(m)
    train(trainer, m, 1)
    save_state(str(tmp_path / "s"), trainer, None)
    other = random_model(llama_config(), seed=1)  # full fine-tuning: other trainable parameters
    path, meta = read_state_meta(str(tmp_path / "s"))
    with pytest.raises(StateError, match="do not match"):
        load_state(path, meta, Trainer(other))


def test_bad_batches_are_refused():
    m = lora_model()
    b = batch(seed=11)
    b["lengths"] = torch.tensor([1, int(b["token_ids"].numel()) - 1], dtype=torch.int32)
    with pytest.raises(BatchError, match="at least 2 tokens"):
        forward_backward(m, Trainer(m), b)
    b = batch(seed=12)
    b["loss"]["weights"] = b["loss"]["weights"][:-1]
    with pytest.raises(BatchError, match="loss.weights: .* values for .* tokens"):
        forward_backward(m, Trainer(m), b)


@pytest.mark.parametrize("kind", ["cross_entropy", "policy_gradient"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(kind):
    """Recomputed layers (with dropout on: the recomputation must draw the same masks)."""
    plain, checkpointed = lora_model(), lora_model()
    b = batch(seed=13, kind=kind)
    out = forward_backward(plain, Trainer(plain), b)
    out_ckpt = forward_backward(checkpointed, Trainer(checkpointed), {**b, "gradient_checkpointing": True})
    assert out_ckpt["loss"] == out["loss"]
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_ppo_value_head_resumes_with_the_state(tmp_path):
    """The value head is trainable state: saved, and re-created by loading into a model
    without one."""
    m = lora_model()
    m.add_value_head()
    trainer = Trainer(m)
    for step in range(2):
        forward_backward(m, trainer, batch(seed=20 + step, kind="ppo"))
        trainer.optim_step(CONFIG)
    assert not torch.all(m.value_head.weight == 0)
    save_state(str(tmp_path / "s"), trainer, None, value_head=True)
    path, meta = read_state_meta(str(tmp_path / "s"))
    assert meta["value_head"] is True
    fresh = lora_model()
    fresh.add_value_head()
    load_state(path, meta, Trainer(fresh))
    assert torch.equal(fresh.value_head.weight, m.value_head.weight)


def sampled_rollouts(m, temperature, top_p=1.0):
    """Completions sampled at `temperature`, as policy-gradient examples: the whole sequence,
    the completion masked in, and sample's log-probs as the old log-probs."""
    prompts = [torch.tensor([1, 5, 9]), torch.tensor([1, 44, 7, 3])]
    params = SampleParams(
        n=2, max_new_tokens=6, temperature=temperature, top_p=top_p, top_k=0, stop_token_ids=(), seed=3
    )
    out = sample(m, prompts, params)
    rows = [(prompts[r // 2], out.tokens[r, : out.lengths[r]], out.logprobs[r, : out.lengths[r]]) for r in range(4)]
    ids = torch.cat([torch.cat((p, c)) for p, c, _ in rows]).to(torch.int32)
    old = torch.cat([torch.cat((torch.zeros(len(p)), lp)) for p, _, lp in rows])
    mask = torch.cat([torch.cat((torch.zeros(len(p)), torch.ones(len(c)))) for p, c, _ in rows])
    b = batch(kind="policy_gradient")
    b.update(token_ids=ids, lengths=torch.tensor([len(p) + len(c) for p, c, _ in rows], dtype=torch.int32))
    b["loss"].update(mask=mask, old_logprobs=old, advantages=torch.tensor([1.0, -1.0, 0.5, -0.5]))
    return b


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_the_policy_loss_scores_the_distribution_sample_drew_from(top_p):
    """At temperature 0.7 sample's log-probs are log_softmax(logits / 0.7) (before top-p); the
    loss evaluates the policy the same way, so on-policy ratios are 1 and nothing is clipped.
    Scored at temperature 1 instead, the same tokens look off-policy."""
    m = lora_model(dropout=0.0)
    b = sampled_rollouts(m, 0.7, top_p)
    on_policy = forward_backward(m, Trainer(m), {**b, "loss": {**b["loss"], "temperature": 0.7}})["metrics"]
    assert on_policy["ratio_mean"] == pytest.approx(1.0, abs=1e-5) and on_policy["clip_fraction"] == 0
    mismatched = forward_backward(m, Trainer(m), {**b, "loss": {**b["loss"], "temperature": 1.0}})["metrics"]
    assert abs(mismatched["ratio_mean"] - 1) > 1e-2


def test_the_reference_is_scored_at_the_loss_temperature():
    m = lora_model(dropout=0.0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(std=0.2, generator=torch.Generator().manual_seed(len(name)))
    b = batch(seed=21, kind="policy_gradient")
    b["loss"]["temperature"] = 0.7
    ids, mask = pack(b["token_ids"], b["lengths"], "cpu"), per_token(b["loss"]["mask"], b["lengths"], "mask", "cpu")
    with torch.no_grad():
        policy = token_logprobs(m, ids, False, temperature=0.7)[0]
        with adapters_disabled(m):
            ref = token_logprobs(m, ids, False, temperature=0.7)[0]
    k3 = (torch.exp(ref - policy) - (ref - policy) - 1)[mask > 0].mean()
    assert forward_backward(m, Trainer(m), b)["metrics"]["kl"] == pytest.approx(float(k3), rel=1e-5)
