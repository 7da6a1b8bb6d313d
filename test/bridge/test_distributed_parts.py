"""A batch split across ranks (distributed.py's batch_part / merge_loss_results), in one process:
the parts run one after another on one model, so their gradients add up as the ranks' all-reduce
adds them. Loss, metrics and gradients must equal the whole batch's, for every loss kind."""

import copy

import pytest
import torch
from bridge_wire import llama_config, random_model
from thinkcells_bridge.distributed import batch_part, merge_loss_results, share
from thinkcells_bridge.lora import apply_lora
from thinkcells_bridge.optim import Trainer
from thinkcells_bridge.training import BatchError, forward, forward_backward

ROWS = 5


def policy_loss(g, n, rows, kind, **overrides):
    loss = {
        "kind": kind,
        "mask": (torch.rand(n, generator=g) > 0.2).float(),
        "old_logprobs": -torch.rand(n, generator=g) * 3,
        "advantages": torch.randn(rows, generator=g),
        "eps_low": 0.2,
        "eps_high": 0.28,
        "ratio_level": "token",
        "aggregation": "seq_mean_token_mean",
        "constant": None,
        "num_tokens": None,
        "num_sequences": None,
        "beta": 0.05,
        "entropy_coef": 0.01,
        "temperature": 0.9,
    }
    if kind == "ppo":
        loss.update(
            advantages=torch.randn(n, generator=g),
            old_values=torch.randn(n, generator=g) * 0.1,
            returns=torch.randn(n, generator=g),
            value_clip=0.2,
            value_coef=0.5,
        )
    loss.update(overrides)
    return loss


CASES = {
    "cross_entropy": lambda g, n, rows: {
        "kind": "cross_entropy",
        "weights": torch.rand(n, generator=g) * (torch.rand(n, generator=g) > 0.3),
        "num_tokens": None,
    },
    "cross_entropy_given_num_tokens": lambda g, n, rows: {
        "kind": "cross_entropy",
        "weights": torch.ones(n),
        "num_tokens": 100.0,
    },
    "grpo": lambda g, n, rows: policy_loss(g, n, rows, "policy_gradient"),
    "dapo": lambda g, n, rows: policy_loss(g, n, rows, "policy_gradient", aggregation="token_mean"),
    "dr_grpo": lambda g, n, rows: policy_loss(g, n, rows, "policy_gradient", aggregation="seq_mean_token_sum_norm"),
    "dr_grpo_num_sequences": lambda g, n, rows: policy_loss(
        g, n, rows, "policy_gradient", aggregation="seq_mean_token_sum_norm", num_sequences=4.0
    ),
    "gspo": lambda g, n, rows: policy_loss(g, n, rows, "policy_gradient", ratio_level="sequence"),
    "ppo": lambda g, n, rows: policy_loss(g, n, rows, "ppo", aggregation="token_mean"),
    "dpo": lambda g, n, rows: {"kind": "dpo", "mask": torch.ones(n), "beta": 0.1, "ref_logprobs": None},
    "dpo_given_reference": lambda g, n, rows: {
        "kind": "dpo",
        "mask": torch.ones(n),
        "beta": 0.1,
        "ref_logprobs": -torch.rand(rows, generator=g) * 20,
    },
}


def body(case, rows=ROWS, seed=0, packed=False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([4 + (3 * r) % 5 for r in range(rows)], dtype=torch.int32)
    n = int(lengths.sum())
    return {
        "token_ids": torch.randint(3, 97, (n,), generator=g, dtype=torch.int32),
        "lengths": lengths,
        # Two examples packed in every row.
        "example_lengths": torch.tensor([x for r in lengths.tolist() for x in (2, r - 2)], dtype=torch.int32)
        if packed
        else None,
        "loss": CASES[case](g, n, rows),
        "loss_scale": 1.0,
        "gradient_checkpointing": False,
    }


def model(value_head):
    m = random_model(llama_config(), seed=3)
    apply_lora(m, rank=4, alpha=8, dropout=0.0, targets="all-linear")
    with torch.no_grad():  # adapters that change the output, and a reference that differs
        for name, p in m.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    if value_head:
        m.add_value_head()
    return m


def run_parts(m, b, world, op):
    trainer = Trainer(m)
    parts = []
    for rank in range(world):
        part = batch_part(m, b, rank, world)
        out = forward_backward(m, trainer, part.body) if op == "forward_backward" else forward(m, part.body)
        parts.append((out, part.counts))
    return merge_loss_results(b, parts)


def test_share_splits_contiguously_with_the_remainder_first():
    assert [share(5, r, 2) for r in range(2)] == [range(0, 3), range(3, 5)]
    assert [len(share(2, r, 3)) for r in range(3)] == [1, 1, 0]
    assert [x for r in range(4) for x in share(11, r, 4)] == list(range(11))


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("case", sorted(CASES))
def test_parts_add_up_to_the_whole_batch(case, world):
    b = body(case, rows=6 if case.startswith("dpo") else ROWS)
    whole_model = model(value_head=case == "ppo")
    parts_model = copy.deepcopy(whole_model)
    whole = forward_backward(whole_model, Trainer(whole_model), b)
    merged = run_parts(parts_model, b, world, "forward_backward")

    assert merged["tokens"] == whole["tokens"]
    assert merged["loss"] == pytest.approx(whole["loss"], rel=1e-5, abs=1e-7)
    assert set(merged["metrics"]) == set(whole["metrics"])
    for name, value in whole["metrics"].items():
        if name != "explained_variance":  # each rank's over its own returns: documented as approximate
            assert merged["metrics"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    grads = dict(parts_model.named_parameters())
    for name, p in whole_model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6)


def test_packed_rows_split_at_row_boundaries():
    b = body("cross_entropy", packed=True)
    whole_model = model(value_head=False)
    parts_model = copy.deepcopy(whole_model)
    whole = forward_backward(whole_model, Trainer(whole_model), b)
    merged = run_parts(parts_model, b, 3, "forward_backward")
    assert merged["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert merged["metrics"]["nll"] == pytest.approx(whole["metrics"]["nll"], rel=1e-5)


def test_forward_parts_add_up_too():
    b = body("grpo")
    m = model(value_head=False)
    whole = forward(m, b)
    merged = run_parts(m, b, 2, "forward")
    assert merged["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert merged["metrics"]["kl"] == pytest.approx(whole["metrics"]["kl"], rel=1e-5)


def test_a_rank_without_sequences_runs_the_first_at_weight_zero():
    b = body("cross_entropy", rows=2)
    part = batch_part(model(value_head=False), b, rank=2, world_size=3)
    assert part.counts is None and part.body["loss_scale"] == 0.0
    assert part.body["lengths"].tolist() == b["lengths"][:1].tolist()


def test_the_whole_batch_is_checked_before_it_is_split():
    m = model(value_head=False)
    b = body("grpo")
    b["loss"]["old_logprobs"] = b["loss"]["old_logprobs"][:-1]
    with pytest.raises(BatchError, match="loss.old_logprobs: .* values for"):
        batch_part(m, b, 0, 2)  # rank 0's part alone has all its values
    b = body("dpo", rows=5)
    with pytest.raises(BatchError, match="pairs"):
        batch_part(m, b, 0, 2)
