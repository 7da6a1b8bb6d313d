"""Log-probs over chunks of positions (training.token_logprobs' chunk_tokens): every loss's value
and gradients equal the plain full-logits computation (chunk_tokens=0), on the native model
(LoRA, full fine-tuning with an untied head, PPO's value head, Gemma 2's final soft-capping) and
on the transformers backend; and no tensor of forward_backward comes near [B, T, vocab]."""

import copy
import pathlib
import subprocess
import sys

import pytest
import torch
from bridge_wire import llama_config, random_model
from thinkcells_bridge import training
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.lora import apply_lora
from thinkcells_bridge.optim import Trainer
from thinkcells_bridge.training import forward_backward, logits_chunk_tokens, token_logprobs
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

KINDS = ["cross_entropy", "policy_gradient", "ppo", "dpo"]
CHUNK = 5  # divides no batch below: the last chunk is a short one
SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "make_random_hf.py"


def batch(kind, lengths, vocab, seed=0):
    """A forward_backward body whose loss switches on every term of its kind: the policy
    gradient's KL (beta > 0) and differentiable entropy bonus, at a sampling temperature."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths, dtype=torch.int32)
    n, rows = int(lengths.sum()), len(lengths)
    ids = torch.randint(3, vocab, (n,), generator=g, dtype=torch.int32)
    mask = (torch.rand(n, generator=g) > 0.2).float()
    policy = {
        "mask": mask,
        "old_logprobs": -torch.rand(n, generator=g) * 3 - 2,
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
        "temperature": 0.7,
    }
    loss = {
        "cross_entropy": {"kind": "cross_entropy", "weights": mask, "num_tokens": None},
        "policy_gradient": {"kind": "policy_gradient", **policy},
        "ppo": {
            "kind": "ppo",
            **policy,
            "advantages": torch.randn(n, generator=g),
            "old_values": torch.randn(n, generator=g) * 0.1,
            "returns": torch.randn(n, generator=g),
            "value_clip": 0.2,
            "value_coef": 0.5,
        },
        "dpo": {"kind": "dpo", "mask": mask, "beta": 0.1, "ref_logprobs": None},
    }[kind]
    return {
        "token_ids": ids,
        "lengths": lengths,
        "example_lengths": None,
        "loss": loss,
        "loss_scale": 1.0,
        "gradient_checkpointing": False,
    }


def with_value_head(model):
    model.add_value_head()
    with torch.no_grad():
        model.value_head.weight.normal_(std=0.3)
    return model


def lora(model, seed=3):
    torch.manual_seed(seed)
    apply_lora(model, rank=4, alpha=8, dropout=0.1, targets="all-linear")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # B ≠ 0: the adapters (and so the KL to the reference) are live
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(std=0.1, generator=g)
    return model


def run(model, body, chunk_tokens):
    model.zero_grad(set_to_none=True)
    out = forward_backward(model, Trainer(model), body, chunk_tokens=chunk_tokens)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def assert_chunked_equals_full(model, body):
    full, full_grads = run(copy.deepcopy(model), body, chunk_tokens=0)
    chunked, chunked_grads = run(model, body, chunk_tokens=CHUNK)
    assert chunked["loss"] == pytest.approx(full["loss"], rel=1e-6, abs=1e-7)
    assert chunked["metrics"] == pytest.approx(full["metrics"], rel=1e-5, abs=1e-6)
    assert chunked_grads.keys() == full_grads.keys() and full_grads
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert any(g.abs().max() > 1e-4 for g in full_grads.values())  # not a comparison of zeros
    return full_grads


LENGTHS = [9, 6, 8, 5]  # 4 rows: DPO's 2 pairs; 24 predicted positions, so 5 chunks of CHUNK


@pytest.mark.parametrize("kind", KINDS)
def test_lora_model_every_loss_kind(kind):
    model = lora(random_model(llama_config(), seed=1))
    if kind == "ppo":
        with_value_head(model)
    grads = assert_chunked_equals_full(model, batch(kind, LENGTHS, vocab=97, seed=2))
    assert any("lora_B" in n for n in grads)
    if kind == "ppo":
        assert {"value_head.weight", "value_head.bias"} <= grads.keys()


def test_chunks_under_gradient_checkpointing():
    """Both recomputations together: the layers' (with adapter dropout) and the chunks' logits."""
    body = {**batch("policy_gradient", LENGTHS, vocab=97, seed=14), "gradient_checkpointing": True}
    assert_chunked_equals_full(lora(random_model(llama_config(), seed=15)), body)


@pytest.mark.parametrize("kind", KINDS)
def test_full_fine_tuning_with_an_untied_head(kind):
    model = random_model(llama_config(tie_word_embeddings=False), seed=4)
    if kind == "ppo":
        with_value_head(model)
    grads = assert_chunked_equals_full(model, batch(kind, LENGTHS, vocab=97, seed=5))
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= grads.keys()


@pytest.mark.parametrize("kind", ["cross_entropy", "policy_gradient"])
def test_soft_capped_logits(kind):
    """Gemma 2's final soft-capping (a cap small enough to bend these logits) runs per chunk."""
    config = llama_config(model_type="gemma2", head_dim=8, query_pre_attn_scalar=8, final_logit_softcapping=2.0)
    model = random_model(config, seed=6)
    assert model.config.final_logit_softcapping == 2.0
    assert_chunked_equals_full(model, batch(kind, LENGTHS, vocab=97, seed=7))


@pytest.fixture(scope="module")
def neox_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt_neox")
    subprocess.run([sys.executable, str(SCRIPT), "gpt_neox", str(out)], check=True, capture_output=True)
    return str(out)


@pytest.mark.parametrize("kind", ["cross_entropy", "policy_gradient"])
def test_transformers_backend(neox_dir, kind):
    model = load_model(neox_dir, torch.device("cpu"), torch.float32)
    assert model.backend == "transformers"
    grads = assert_chunked_equals_full(model, batch(kind, LENGTHS, vocab=256, seed=8))
    assert "lm_head.weight" in grads  # GPT-NeoX's untied output embedding


def test_logprobs_and_entropy_without_autograd_equal_the_full_computation():
    model = random_model(llama_config(), seed=9)
    ids = torch.randint(3, 97, (3, 11), generator=torch.Generator().manual_seed(10))
    for temperature in (1.0, 0.7):
        with torch.inference_mode():
            full = token_logprobs(model, ids, True, with_values=False, temperature=temperature, chunk_tokens=0)
            chunked = token_logprobs(model, ids, True, temperature=temperature, chunk_tokens=4)
        torch.testing.assert_close(chunked[0], full[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(chunked[1], full[1], rtol=1e-6, atol=1e-6)


def test_the_default_chunk_fits_the_memory_budget():
    # 256 MiB of fp32 logits: Qwen2.5's and Gemma 3's vocabularies in chunks of a few hundred
    # tokens; a 512-token vocabulary's batch in one.
    assert logits_chunk_tokens(151_936) == 441
    assert logits_chunk_tokens(262_144) == 256
    assert logits_chunk_tokens(512) == 131_072
    assert logits_chunk_tokens(10**12) == 1


class LargestTensors(TorchDispatchMode):
    """Records the size of every tensor each op returns, forward and backward."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[int, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.sizes += [(t.numel(), str(func)) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out

    def largest(self) -> tuple[int, str]:
        return max(self.sizes)


# A vocabulary much larger than the width, as in real models: the weights [V, H] and their
# gradients (the embedding's, the untied head's) have V·H = 65,536 elements, under the bound
# B·T·V/4 = 2·64·4096/4 = 131,072 the logits must stay below. So must the attention mask
# (B·T·T = 8,192 elements) and every activation ([B, T, H] or [B, T, intermediate]).
VOCAB, WIDTH, ROWS, LONGEST = 4096, 16, 2, 64
BOUND = ROWS * LONGEST * VOCAB // 4
BIG = llama_config(
    vocab_size=VOCAB,
    hidden_size=WIDTH,
    intermediate_size=32,
    num_attention_heads=2,
    num_key_value_heads=1,
    tie_word_embeddings=False,
    max_position_embeddings=128,
)


def largest_tensor(kind, chunk_tokens, model=None):
    model = model or random_model(BIG, seed=11)
    if kind == "ppo":
        with_value_head(model)
    body = batch(kind, [LONGEST, LONGEST - 3], vocab=VOCAB, seed=12)
    recorder = LargestTensors()
    with recorder:
        forward_backward(model, Trainer(model), body, chunk_tokens=chunk_tokens)
    assert any("backward" in op for _, op in recorder.sizes)  # backward ran under the recorder
    return recorder.largest()


@pytest.mark.parametrize("kind", KINDS)
def test_no_tensor_near_batch_by_vocabulary(kind):
    size, op = largest_tensor(kind, chunk_tokens=16)  # 16 · V = 65,536 elements a chunk
    assert size < BOUND, (size, op)


def test_the_full_computation_would_break_the_bound():
    """The recorder sees the logits when they are whole: the bound above is not vacuous."""
    size, _ = largest_tensor("cross_entropy", chunk_tokens=0)
    assert size >= ROWS * (LONGEST - 1) * VOCAB


def test_the_default_chunk_follows_the_budget(monkeypatch):
    monkeypatch.setattr(training, "LOGITS_CHUNK_BYTES", 16 * VOCAB * 4)
    size, op = largest_tensor("policy_gradient", chunk_tokens=None)
    assert size < BOUND, (size, op)


def test_lora_model_stays_under_the_bound():
    size, op = largest_tensor("policy_gradient", chunk_tokens=16, model=lora(random_model(BIG, seed=13)))
    assert size < BOUND, (size, op)
