"""Packed rows (forward_backward's example_lengths): each example attends only to itself, with
positions from 0, so a packed batch gives every example exactly its unpacked log-probs, loss and
gradients: on the native model (Gemma 2's sliding window included) and on the transformers
backend, which builds the block-diagonal mask from the restarted position ids."""

import copy
import pathlib
import subprocess
import sys

import pytest
import torch
from bridge_wire import llama_config, random_model
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.lora import apply_lora
from thinkcells_bridge.optim import Trainer
from thinkcells_bridge.training import BatchError, example_segments, forward_backward, pack, token_logprobs

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "make_random_hf.py"
# Three rows of packed examples; the flat token_ids are the same packed or not.
ROWS = [[5, 7], [9], [4, 3, 2]]
EXAMPLES = [n for row in ROWS for n in row]


def body(packed: bool, vocab: int, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(EXAMPLES)
    lengths = [sum(row) for row in ROWS] if packed else EXAMPLES
    return {
        "token_ids": torch.randint(3, vocab, (n,), generator=g, dtype=torch.int32),
        "lengths": torch.tensor(lengths, dtype=torch.int32),
        "example_lengths": torch.tensor(EXAMPLES, dtype=torch.int32) if packed else None,
        # Every token weighted, examples' first tokens included: those are never predicted.
        "loss": {"kind": "cross_entropy", "weights": torch.rand(n, generator=g) + 0.5, "num_tokens": None},
        "loss_scale": 1.0,
        "gradient_checkpointing": False,
    }


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    dirs = {}
    for family in ("gpt_neox", "olmo2"):
        out = tmp_path_factory.mktemp(family)
        subprocess.run([sys.executable, str(SCRIPT), family, str(out)], check=True, capture_output=True)
        dirs[family] = str(out)
    return dirs


def make_model(name, hf_dirs):
    """(model, vocab): native Llama with LoRA, native Gemma 2 with a sliding window shorter
    than the examples, or a transformers-backed family."""
    if name == "llama_lora":
        model = random_model(llama_config(), seed=1)
        torch.manual_seed(2)
        apply_lora(model, rank=4, alpha=8, dropout=0.0, targets="all-linear")
        return model, 97
    if name == "gemma2_window":
        config = llama_config(model_type="gemma2", head_dim=8, query_pre_attn_scalar=8, sliding_window=3)
        model = random_model(config, seed=3)
        assert model.config.window(0) == 3
        return model, 97
    return load_model(hf_dirs[name], torch.device("cpu"), torch.float32), 256


MODELS = ["llama_lora", "gemma2_window", "gpt_neox", "olmo2"]


@pytest.mark.parametrize("name", MODELS)
def test_packed_examples_have_their_unpacked_logprobs(name, hf_dirs):
    model, vocab = make_model(name, hf_dirs)
    packed, alone = body(True, vocab), body(False, vocab)
    segments = example_segments(packed["example_lengths"], packed["lengths"], "cpu")
    with torch.no_grad():
        together = token_logprobs(model, pack(packed["token_ids"], packed["lengths"], "cpu"), False, segments=segments)[
            0
        ]
        separate = token_logprobs(model, pack(alone["token_ids"], alone["lengths"], "cpu"), False)[0]
    example = 0
    for row, sizes in enumerate(ROWS):
        start = 0
        for n in sizes:
            # Position start + t - 1 predicts the example's token t, for t = 1 .. n - 1.
            got = together[row, start : start + n - 1]
            torch.testing.assert_close(got, separate[example, : n - 1], rtol=1e-5, atol=1e-6)
            start, example = start + n, example + 1


@pytest.mark.parametrize("name", MODELS)
def test_packed_batch_gives_the_unpacked_loss_and_gradients(name, hf_dirs):
    model, vocab = make_model(name, hf_dirs)
    twin = copy.deepcopy(model)
    packed = forward_backward(model, Trainer(model), body(True, vocab))
    alone = forward_backward(twin, Trainer(twin), body(False, vocab))
    assert packed["loss"] == pytest.approx(alone["loss"], rel=1e-6)
    assert packed["metrics"] == pytest.approx(alone["metrics"], rel=1e-6)
    grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    assert grads
    for (n, g), q in zip(grads, (p.grad for p in twin.parameters() if p.grad is not None)):
        torch.testing.assert_close(g, q, rtol=1e-5, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")


def test_without_example_lengths_packed_examples_see_each_other():
    model, vocab = make_model("llama_lora", None)
    unmarked = {**body(True, vocab), "example_lengths": None}
    isolated = forward_backward(copy.deepcopy(model), Trainer(model), body(True, vocab))["loss"]
    assert forward_backward(model, Trainer(model), unmarked)["loss"] != pytest.approx(isolated, rel=1e-3)


@pytest.mark.parametrize(
    ("example_lengths", "message"),
    [
        ([5, 7, 9, 4, 3], "add up to 28 tokens but token_ids has 30"),
        ([5, 8, 8, 4, 3, 2], "runs past the end of row 0"),
        ([5, 7, 9, 4, 5, 0], "at least 1 token"),
    ],
)
def test_example_lengths_must_tile_the_rows(example_lengths, message):
    model, vocab = make_model("llama_lora", None)
    bad = {**body(True, vocab), "example_lengths": torch.tensor(example_lengths, dtype=torch.int32)}
    with pytest.raises(BatchError, match=f"example_lengths: .*{message}"):
        forward_backward(model, Trainer(model), bad)


def test_packing_is_for_cross_entropy_only():
    model, vocab = make_model("llama_lora", None)
    b = body(True, vocab)
    n = int(b["token_ids"].numel())
    b["loss"] = {"kind": "dpo", "mask": torch.ones(n), "beta": 0.1, "ref_logprobs": None}
    with pytest.raises(BatchError, match="example_lengths: packed rows are for the cross_entropy loss, not dpo"):
        forward_backward(model, Trainer(model), b)


def test_transformers_models_without_position_ids_refuse_packing(hf_dirs, monkeypatch):
    model, vocab = make_model("gpt_neox", hf_dirs)
    monkeypatch.setattr(model, "_takes_positions", False)
    with pytest.raises(ValueError, match="segments: this gpt_neox model takes no position ids"):
        forward_backward(model, Trainer(model), body(True, vocab))
