"""The transformers-backed model (transformers_model.py) against transformers itself, on small
random checkpoints of two families without native code (scripts/make_random_hf.py)."""

import json
import pathlib
import re
import subprocess
import sys

import pytest
import torch
import transformers
from thinkcells_bridge import environment
from thinkcells_bridge.environment import MissingPackage
from thinkcells_bridge.hf_checkpoint import CheckpointError
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.lora import apply_lora
from thinkcells_bridge.model_config import SUPPORTED_MODEL_TYPES, ModelConfigError
from thinkcells_bridge.quant import quantize_base
from thinkcells_bridge.sampling import SampleParams, sample
from thinkcells_bridge.training import token_logprobs
from transformers import AutoModelForCausalLM

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "make_random_hf.py"
TARGETS = {
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    "olmo2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=sorted(TARGETS))
def checkpoint(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    subprocess.run([sys.executable, str(SCRIPT), request.param, str(out)], check=True, capture_output=True)
    return request.param, str(out)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    """(family, bridge model, transformers' own model of the same directory)."""
    family, path = checkpoint
    return family, load_model(path, CPU, torch.float32), AutoModelForCausalLM.from_pretrained(path).eval()


def forward(model, ids, pad):
    positions = (torch.arange(ids.shape[1])[None] - pad[:, None]).clamp(min=0)
    return model.logits(model.hidden_states(ids, positions, pad))


def greedy(n=8, use_cache=True):
    return SampleParams(
        n=1, max_new_tokens=n, temperature=0, top_p=1, top_k=0, stop_token_ids=(), seed=None, use_cache=use_cache
    )


PROMPTS = [torch.tensor([1, 5, 9, 33, 7, 100]), torch.tensor([1, 44]), torch.tensor([3, 17, 250])]


def test_loads_with_transformers_names_and_targets(loaded):
    family, model, reference = loaded
    assert model.backend == "transformers"
    assert model.adapter_targets == TARGETS[family]
    assert list(model.state_dict()) == list(reference.state_dict())
    assert (model.config.model_type, model.config.vocab_size, model.config.num_hidden_layers) == (family, 256, 2)
    assert model.config.tie_word_embeddings == (family == "olmo2")
    assert (model.config.bos_token_id, model.config.eos_token_ids, model.config.rope_scaling) == (1, (2,), None)


def test_left_padded_batch_matches_transformers_per_sequence(loaded):
    _, model, reference = loaded
    longest = max(len(p) for p in PROMPTS)
    pad = torch.tensor([longest - len(p) for p in PROMPTS])
    ids = torch.stack([torch.cat((torch.zeros(n, dtype=torch.long), p)) for n, p in zip(pad.tolist(), PROMPTS)])
    with torch.no_grad():
        batched = forward(model, ids, pad)
        for row, p in enumerate(PROMPTS):
            expected = reference(p[None]).logits[0]
            torch.testing.assert_close(batched[row, pad[row] :], expected, atol=1e-5, rtol=1e-5)


def test_cached_greedy_decode_matches_full_forward_and_generate(loaded):
    _, model, reference = loaded
    cached, full = sample(model, PROMPTS, greedy()), sample(model, PROMPTS, greedy(use_cache=False))
    assert torch.equal(cached.tokens, full.tokens)
    torch.testing.assert_close(cached.logprobs, full.logprobs, atol=1e-5, rtol=0)
    for row, p in enumerate(PROMPTS):
        generated = reference.generate(p[None], max_new_tokens=8, min_new_tokens=8, do_sample=False)
        assert generated[0, len(p) :].tolist() == cached.tokens[row].tolist()


def test_shared_prompts_copy_the_dynamic_cache_and_sample_as_unshared(loaded):
    """One prefill per prompt, its DynamicCache rows copied to the prompt's samples: the same
    samples as prefilling every row, for a fixed seed; the fixed-shape step is native-only."""
    _, model, reference = loaded
    p = SampleParams(
        n=3, max_new_tokens=8, temperature=0.8, top_p=0.95, top_k=0, stop_token_ids=(2,), seed=4, share_prompts=True
    )
    shared = sample(model, PROMPTS, p)
    unshared = sample(model, PROMPTS, SampleParams(**{**p.__dict__, "share_prompts": False}))
    assert shared.tokens.tolist() == unshared.tokens.tolist()
    assert shared.lengths.tolist() == unshared.lengths.tolist()
    torch.testing.assert_close(shared.logprobs, unshared.logprobs, atol=1e-5, rtol=0)
    assert (shared.prefill_tokens, unshared.prefill_tokens) == (3 * 6, 9 * 6)
    with pytest.raises(ValueError, match="decoder: 'static' needs a native model"):
        sample(model, PROMPTS, SampleParams(**{**p.__dict__, "decoder": "static"}))


def test_value_head_starts_at_zero_and_stays_out_of_the_base_weights(checkpoint):
    model = load_model(checkpoint[1], CPU, torch.float32)
    model.add_value_head()
    ids = torch.tensor([[1, 5, 9, 33]])
    _, _, values = token_logprobs(model, ids, with_entropy=False, with_values=True)
    assert values.shape == (1, 3) and torch.equal(values, torch.zeros(1, 3))
    assert {"value_head.weight", "value_head.bias"} <= set(model.state_dict())


def test_lora_wraps_every_target_and_checkpointing_keeps_gradients(checkpoint):
    family, path = checkpoint
    model = load_model(path, CPU, torch.float32)
    ids = torch.tensor([[1, 5, 9, 33, 7], [1, 44, 3, 8, 250]])
    with torch.no_grad():
        before = forward(model, ids, torch.zeros(2, dtype=torch.long))
    adapted = apply_lora(model, rank=2, alpha=4, dropout=0.0, targets="all-linear")
    assert len(adapted) == 2 * len(TARGETS[family])
    with torch.no_grad():
        torch.testing.assert_close(
            forward(model, ids, torch.zeros(2, dtype=torch.long)), before, atol=0, rtol=0
        )  # B = 0
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(std=0.1)
    grads = []
    model.train()
    for checkpointing in (False, True):
        model.zero_grad()
        token_logprobs(model, ids, with_entropy=False, checkpoint_layers=checkpointing)[0].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 2 * len(adapted)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_quantized_base_stays_close(loaded, checkpoint):
    family, model, _ = loaded
    quantized = load_model(checkpoint[1], CPU, torch.float32)
    assert len(quantize_base(quantized, "int8")) == 2 * len(TARGETS[family])
    ids, pad = torch.tensor([[1, 5, 9, 33, 7]]), torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        expected, got = forward(model, ids, pad), forward(quantized, ids, pad)
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def write_config(directory: pathlib.Path, config: dict) -> str:
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


@pytest.mark.parametrize(
    "model_type, reason",
    [
        ("bert", "an encoder model"),
        ("t5", "an encoder-decoder model"),
        ("bart", "an encoder-decoder model"),
        ("no_such_model", "AutoModelForCausalLM does not know it"),
    ],
)
def test_unsupported_model_type_names_what_is_supported(tmp_path, model_type, reason):
    path = write_config(tmp_path / model_type, {"model_type": model_type})
    with pytest.raises(ModelConfigError) as error:
        load_model(path, CPU, torch.float32)
    message = str(error.value)
    native = ", ".join(SUPPORTED_MODEL_TYPES)
    assert message == (
        f"{path}/config.json: model_type {model_type!r} is not supported ({reason}); thinkcells runs {native} "
        f"natively, or any decoder-only model transformers' AutoModelForCausalLM builds (transformers {transformers.__version__})"
    )


def test_refuses_rope_scaling_at_load_missing_tensors_and_nan(checkpoint, tmp_path):
    family, path = checkpoint
    with pytest.raises(
        ModelConfigError, match=r"loadModel ropeScaling is for the native families .*put rope_scaling in config.json"
    ):
        load_model(path, CPU, torch.float32, rope_scaling={"type": "linear", "factor": 2.0, "target_length": None})
    reference = AutoModelForCausalLM.from_pretrained(path)
    weights = dict(reference.state_dict())
    first = next(iter(weights))
    broken = {**weights, first: weights[first].clone().fill_(float("nan"))}
    reference.save_pretrained(tmp_path / "nan", state_dict=broken)
    with pytest.raises(CheckpointError, match=rf"tensor '{first}' has \d+ NaN"):
        load_model(str(tmp_path / "nan"), CPU, torch.float32)
    assert load_model(str(tmp_path / "nan"), CPU, torch.float32, allow_non_finite=True).backend == "transformers"
    missing = {k: v for k, v in weights.items() if "layers.1." not in k}
    reference.save_pretrained(tmp_path / "missing", state_dict=missing)
    with pytest.raises(CheckpointError, match=r"tensor '.*layers\.1\..*' is missing \(and \d+ more\)"):
        load_model(str(tmp_path / "missing"), CPU, torch.float32)
    name = next(k for k in weights if k.endswith(TARGETS[family][-1] + ".weight"))
    reference.save_pretrained(tmp_path / "shape", state_dict={**weights, name: weights[name][:, :16]})
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' has shape \[32, 16\], config.json implies \[32, 64\]"):
        load_model(str(tmp_path / "shape"), CPU, torch.float32)


def test_without_transformers_the_error_gives_the_install_command(checkpoint, monkeypatch):
    pinned = re.escape(environment.requirement_groups()["optional"]["transformers"])
    monkeypatch.setattr(environment, "installed_version", lambda distribution: None)
    with pytest.raises(
        MissingPackage,
        match=rf"model_type '{checkpoint[0]}' \(not one of the native .*\) needs the Python package "
        rf"transformers, .* -m pip install 'transformers=={pinned}'",
    ):
        load_model(checkpoint[1], CPU, torch.float32)


def test_conv1d_layers_offer_no_lora_targets(tmp_path):
    # GPT-2's projections are transformers' Conv1D, not nn.Linear: the model runs, LoRA says why it cannot.
    config = transformers.AutoConfig.for_model("gpt2", n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    model = load_model(str(tmp_path), CPU, torch.float32)
    assert model.adapter_targets == () and model.config.max_position_embeddings == 64
    with pytest.raises(
        ValueError, match=r"this gpt2 model offers no LoRA targets: its decoder layers have no nn\.Linear projections"
    ):
        apply_lora(model, rank=2, alpha=4, dropout=0.0, targets="all-linear")
