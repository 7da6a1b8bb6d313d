"""Training faults (issue 13): updates that overflow the weights, steps whose every loss was
non-finite, and two clients training one model. In process, on the worker's own ops; the same
cases through the TypeScript cells and a real bridge are in training.test.ts."""

import threading

import pytest
import torch
from test_training import CONFIG, batch, lora_model
from thinkcells_bridge.ops import LoadedModel, OpError, RequestContext, Worker
from thinkcells_bridge.optim import AdamWConfig, Trainer
from thinkcells_bridge.sampling import Cancelled
from thinkcells_bridge.training import forward_backward


def snapshot(trainer):
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    moments = {id(p): {k: v.clone() for k, v in s.items()} for p, s in trainer.optimizer.state.items()}
    return weights, moments, trainer.step


def assert_same(trainer, saved):
    weights, moments, step = saved
    assert all(torch.equal(p, weights[n]) for n, p in trainer.model.named_parameters())
    assert {id(p): s.keys() for p, s in trainer.optimizer.state.items()} == {k: s.keys() for k, s in moments.items()}
    for p, s in trainer.optimizer.state.items():
        assert all(torch.equal(v, moments[id(p)][k]) for k, v in s.items())
    assert trainer.step == step


@pytest.mark.parametrize("lr, weight_decay", [(1e308, 0.0), (1e30, 1e10)], ids=["huge-lr", "huge-decay"])
def test_n1_an_update_that_leaves_a_weight_non_finite_is_rolled_back(lr, weight_decay):
    # Two twins; one takes the overflowing step in between. Dropout off: the twins draw nothing.
    twins = [lora_model(dropout=0.0), lora_model(dropout=0.0)]
    trainers = [Trainer(m) for m in twins]
    for m, t in zip(twins, trainers):
        forward_backward(m, t, batch(seed=1))
        t.optim_step(CONFIG)
    bad, good = trainers
    saved = snapshot(bad)
    forward_backward(twins[0], bad, batch(seed=2))
    out = bad.optim_step(AdamWConfig(lr=lr, weight_decay=weight_decay))
    assert out["skipped"] and "non-finite" in out["reason"] and "rolled back" in out["reason"], out
    assert out["step"] == 1
    assert_same(bad, saved)
    assert all(p.grad is None for p in twins[0].parameters())
    # The next step is the one the twin takes: weights, moments and step count were all restored.
    for m, t in zip(twins, trainers):
        forward_backward(m, t, batch(seed=3))
        assert not t.optim_step(CONFIG)["skipped"]
    assert all(torch.equal(p, q) for p, q in zip(*(m.parameters() for m in twins)))


def test_n1_a_first_step_rolled_back_leaves_no_optimizer_state_and_names_an_eps_fp16_cannot_hold():
    # fp16 rounds AdamW's usual ε of 1e-8 to 0: a zero gradient then divides 0 by 0.
    m = lora_model(dropout=0.0).to(torch.float16)
    trainer = Trainer(m)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    forward_backward(m, trainer, batch(seed=1))
    out = trainer.optim_step(CONFIG)
    assert out["skipped"] and out["reason"].endswith("needs a larger eps (1e-08 is 0 in the weights' dtype)"), out
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())
    assert not trainer.optimizer.state
    forward_backward(m, trainer, batch(seed=1))
    assert trainer.optim_step(AdamWConfig(lr=1e-2, eps=1e-6))["step"] == 1


def test_n2_a_step_whose_every_micro_batch_had_a_non_finite_loss_is_skipped_with_the_reason():
    m = lora_model()
    trainer = Trainer(m)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for seed in (4, 5):  # two micro-batches, neither with a finite loss: no backward at all
        b = batch(seed=seed, kind="policy_gradient")
        b["loss"]["advantages"][0] = float("inf")
        forward_backward(m, trainer, b)
    out = trainer.optim_step(CONFIG)
    assert out == {
        "grad_norm": None,
        "skipped": True,
        "step": 0,
        "reason": "non-finite loss in forward_backward (policy_gradient, loss -inf)",
    }
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())
    # Nothing is left over: the next step without forward_backward is the usual error.
    with pytest.raises(ValueError, match="no gradients to apply"):
        trainer.optim_step(CONFIG)


# -- C2: one client's cycle ---------------------------------------------------------------------

A, B = "notebook (connection 1)", "script (connection 2)"


def worker():
    w = Worker("corpus", torch.device("cpu"))
    w.models["m"] = LoadedModel("m", "/nowhere", lora_model(dropout=0.0), {})
    return w


def ctx(client, cancelled=False):
    event = threading.Event()
    if cancelled:
        event.set()
    return RequestContext(1, event, client)


def fb(w, client, seed=6, **kw):
    return w.forward_backward({**batch(seed=seed), "model": "m"}, ctx(client, **kw))


def step(w, client):
    return w.optim_step(
        {
            "model": "m",
            "lr": 1e-2,
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
        },
        ctx(client),
    )


def test_c2_another_client_cannot_join_or_step_a_cycle_in_progress():
    w = worker()
    fb(w, A)
    fb(w, A, seed=7)  # the holder's own micro-batches accumulate as before
    for op in (lambda: fb(w, B), lambda: step(w, B), lambda: w.reset_optimizer({"model": "m"}, ctx(B))):
        with pytest.raises(OpError, match=r"model 'm' is mid-cycle for notebook \(connection 1\)") as err:
            op()
        assert "another client" in str(err.value)
    assert not step(w, A)["skipped"]
    fb(w, B)  # free again: the cycle now belongs to B
    with pytest.raises(OpError, match=r"mid-cycle for script \(connection 2\)"):
        fb(w, A)
    w.reset_optimizer({"model": "m"}, ctx(B))  # the holder's reset ends its cycle too
    fb(w, A)


def test_c2_a_client_that_leaves_mid_cycle_frees_the_model_and_its_gradients_go():
    w, alone = worker(), worker()
    fb(w, A)
    w.client_gone(A)
    fb(w, B)
    fb(alone, B)
    assert step(w, B) == step(alone, B)  # B's step alone: nothing of A's gradients was left behind
    for p, q in zip(w.models["m"].model.parameters(), alone.models["m"].model.parameters()):
        assert torch.equal(p, q)


def test_c2_a_request_of_a_client_already_gone_does_not_take_the_cycle():
    # The connection closed while this forward_backward waited for the model's lock: client_gone
    # has already run, so a cycle it started now would be held by nobody, for ever.
    w = worker()
    with pytest.raises(Cancelled):
        fb(w, A, cancelled=True)
    fb(w, B)
