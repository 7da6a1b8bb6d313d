"""The native model checked against transformers, family by family, on small random models that
transformers builds from a published config.json scaled down in size only (hf_families.py), so
every feature the real model switches on (RoPE scaling, sliding windows, softcaps, q/k norms,
biases, tied heads) is on here too.

Each model directory comes in two config styles with the same weights: "transformers", the
config.json transformers 5 writes (rope_parameters, layer_types), and "published", the scaled
Hub file itself (rope_theta, rope_scaling, rope_local_base_freq, sliding_window_pattern).

Transformers runs with attn_implementation="eager" throughout: its reference attention, the
only one that applies Gemma 2's attention-logit softcap, and the same one for every family.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hf_families import (
    PUBLISHED,
    SIZE_FIELDS_FROM_DEFAULTS,
    SMALL_MAX_POSITIONS,
    SMALL_UNTIED_HEAD_DIM,
    SMALL_VOCAB,
    SPECIAL_TOKEN_FLOOR,
    scale_down,
    sliding_windows,
)
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.ops import RequestContext, Worker
from thinkcells_bridge.sampling import SampleParams, left_pad, sample, sequence_logprobs

pytest.importorskip("transformers")
from safetensors import safe_open  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

CPU = torch.device("cpu")
FAMILIES = list(PUBLISHED)
STYLES = ("transformers", "published")

# Every test sequence is longer than the scaled sliding window (8), so the window masks keys.
PADDED_BATCH_LENGTHS = (24, 17, 11)
GREEDY_PROMPT_LENGTH = 12
GREEDY_NEW_TOKENS = 32
BF16_SEQUENCE_LENGTH = 40
SHORTEST_TEST_SEQUENCE = min(*PADDED_BATCH_LENGTHS, GREEDY_PROMPT_LENGTH + GREEDY_NEW_TOKENS, BF16_SEQUENCE_LENGTH)
FP32_TOLERANCE = 1e-4

# Features the published configs switch on, each with a config edit that switches it off. On
# these tiny models each must still move transformers' logits well past FP32_TOLERANCE, or a
# native model that ignored it would pass. (Weight-borne features, such as Qwen's biases and
# q/k norms, are live through perturb. query_pre_attn_scalar differs from head_dim only in
# gemma-2-27b, which is here for that.)
FEATURE_SWITCHES = {
    "llama": {"llama3 RoPE scaling": {"rope_scaling": None}},
    "mistral": {"sliding window": {"sliding_window": None}},
    "gemma2": {
        "attention-logit softcap": {"attn_logit_softcapping": None},
        "final-logit softcap": {"final_logit_softcapping": None},
        "sliding window": {"sliding_window": SMALL_MAX_POSITIONS},
    },
    "gemma2_27b": {"query_pre_attn_scalar": {"query_pre_attn_scalar": SMALL_UNTIED_HEAD_DIM}},
    "gemma3_text": {
        "sliding window": {"sliding_window": SMALL_MAX_POSITIONS},
        "local RoPE base": {"rope_local_base_freq": 1_000_000},
    },
    "gemma3": {
        "sliding window": {"sliding_window": SMALL_MAX_POSITIONS},
        "linear RoPE scaling": {"rope_scaling": None},
    },
}


@dataclass
class Reference:
    family: str
    scaled: dict  # the published config, scaled down
    hf: torch.nn.Module  # transformers' model, fp32, eager attention, eval mode
    dirs: dict[str, Path]  # config style → model directory (same weights)


def tokens(shape, seed):
    """Ordinary token ids: below the slots special tokens (Gemma 3's image token) were moved to."""
    return torch.randint(3, SPECIAL_TOKEN_FLOOR, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def perturb(model: torch.nn.Module, seed: int) -> None:
    """Noise on every parameter, so no weight sits at its init value: RMSNorm weights at 1 (or 0
    for Gemma's 1 + w) and zero biases would hide a norm or bias applied the wrong way. Matrices
    get noise of std 1/sqrt(fan_in), so activations (and attention scores, which Gemma 2 softcaps)
    are of order one rather than vanishing."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():  # tied weights appear once
        std = p[0].numel() ** -0.5 if p.ndim >= 2 else 0.1
        p.add_(torch.randn(p.shape, generator=g) * std)


def build_reference(family: str, root: Path) -> Reference:
    scaled = scale_down(PUBLISHED[family])
    published = root / "published"
    published.mkdir(parents=True)
    (published / "config.json").write_text(json.dumps(scaled, indent=2))
    # Read as transformers reads a Hub checkpoint's file, old-style keys and all.
    config = AutoConfig.from_pretrained(published)
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    perturb(hf, seed=1)
    hf.eval()
    ported = root / "transformers"
    hf.save_pretrained(ported)  # safetensors: transformers 5 writes no other format
    for f in ported.iterdir():
        if f.name != "config.json":
            shutil.copy(f, published / f.name)
    return Reference(family, scaled, hf, {"transformers": ported, "published": published})


@pytest.fixture(scope="module", params=FAMILIES)
def reference(request, tmp_path_factory) -> Reference:
    """One transformers model per family, built once for the module."""
    return build_reference(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(params=STYLES)
def model_dir(request, reference) -> Path:
    return reference.dirs[request.param]


def padded_batch(seed=0):
    """Left-padded rows of different lengths: ids [B, T], pad counts [B], attention mask [B, T]."""
    rows = [tokens((n,), seed + i) for i, n in enumerate(PADDED_BATCH_LENGTHS)]
    ids, pad = left_pad(rows, CPU)
    mask = (torch.arange(ids.shape[1])[None, :] >= pad[:, None]).long()
    return ids, pad, mask


@torch.no_grad()
def hf_logits(hf, ids, mask):
    # Positions restart at 0 after the padding, as thinkcells numbers them.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()


@torch.no_grad()
def thinkcells_logits(model, ids, pad):
    positions = (torch.arange(ids.shape[1])[None, :] - pad[:, None]).clamp(min=0)
    return model.logits(model.hidden_states(ids, positions, pad)).float()


def max_diff_at_real_positions(a, b, mask):
    real = mask.bool()
    return (a[real] - b[real]).abs().max().item()


@torch.no_grad()
def hf_token_logprobs(hf, seq):
    logits = hf(input_ids=seq[None]).logits.float()[0, :-1]
    return torch.log_softmax(logits, -1).gather(-1, seq[1:, None]).squeeze(-1)


def test_scaled_config_changes_only_sizes(reference):
    published, scaled = PUBLISHED[reference.family], reference.scaled
    assert scaled.keys() == published.keys()
    for sub in ("text_config", "vision_config"):
        if sub in published:
            # A sparse sub-config (gemma-3-4b-it's text_config) gets the size fields it left to
            # defaults written out, and nothing else.
            added = scaled[sub].keys() - published[sub].keys()
            assert published[sub].keys() <= scaled[sub].keys() and added <= set(SIZE_FIELDS_FROM_DEFAULTS), added
    windows = sliding_windows(scaled)
    if reference.family in ("mistral", "gemma2", "gemma2_27b", "gemma3_text", "gemma3"):
        assert windows, "the published config has an active sliding window"
    assert all(w < SHORTEST_TEST_SEQUENCE for w in windows), (windows, SHORTEST_TEST_SEQUENCE)
    # transformers' model really is the scaled published one (a typo'd key would be ignored).
    text = reference.hf.config.get_text_config()
    assert text.vocab_size == SMALL_VOCAB
    assert getattr(text, "sliding_window", None) in (None, *windows)
    if reference.family == "gemma3":
        assert type(reference.hf).__name__ == "Gemma3ForConditionalGeneration"


def hf_model_with_config_edit(reference: Reference, edit: dict, root: Path):
    """transformers' model of the reference's weights, its (text) config edited."""
    config = copy.deepcopy(reference.scaled)
    config.get("text_config", config).update(edit)
    root.mkdir()
    (root / "config.json").write_text(json.dumps(config))
    hf = AutoModelForCausalLM.from_config(
        AutoConfig.from_pretrained(root), attn_implementation="eager", dtype=torch.float32
    )
    hf.load_state_dict(reference.hf.state_dict())
    return hf.eval()


def test_every_published_feature_moves_the_logits(reference, tmp_path):
    ids, pad, mask = padded_batch()
    expected = hf_logits(reference.hf, ids, mask)
    for i, (feature, edit) in enumerate(FEATURE_SWITCHES.get(reference.family, {}).items()):
        without = hf_logits(hf_model_with_config_edit(reference, edit, tmp_path / str(i)), ids, mask)
        assert max_diff_at_real_positions(without, expected, mask) > 10 * FP32_TOLERANCE, feature


def test_padded_batch_logits_match(reference, model_dir):
    ids, pad, mask = padded_batch()
    model = load_model(str(model_dir), CPU, torch.float32)
    diff = max_diff_at_real_positions(thinkcells_logits(model, ids, pad), hf_logits(reference.hf, ids, mask), mask)
    assert diff <= FP32_TOLERANCE


# How the cached decode steps run: the default (the C step for Llama-shaped models, else the
# fixed-shape step), the fixed-shape step (static_decode) and model.hidden_states' growing cache.
DECODERS = ("auto", "static", "hidden_states")


@pytest.mark.parametrize("decoder", DECODERS)
def test_greedy_decoding_through_the_cache_matches_generate(reference, model_dir, decoder):
    prompt = tokens((GREEDY_PROMPT_LENGTH,), seed=7)
    model = load_model(str(model_dir), CPU, torch.float32)
    params = SampleParams(
        n=1,
        max_new_tokens=GREEDY_NEW_TOKENS,
        temperature=0.0,
        top_p=1.0,
        top_k=0,
        stop_token_ids=(),
        seed=None,
        use_cache=True,
        decoder=decoder,
    )
    ours = sample(model, [prompt], params)
    with torch.no_grad():
        # eos_token_id=None: no early stop, as thinkcells was given no stop tokens. (min_new_tokens
        # would instead mask the eos logits, which changes the argmax.)
        out = reference.hf.generate(
            prompt[None],
            attention_mask=torch.ones(1, GREEDY_PROMPT_LENGTH, dtype=torch.long),
            do_sample=False,
            max_new_tokens=GREEDY_NEW_TOKENS,
            eos_token_id=None,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_logits=True,
        )
    theirs = out.sequences[0, GREEDY_PROMPT_LENGTH:]
    assert len(theirs) == GREEDY_NEW_TOKENS
    assert ours.tokens[0].tolist() == theirs.tolist()
    # Random models soon repeat themselves; the chosen tokens' log-probs check every cached step
    # numerically, however few distinct tokens the chain has.
    their_logprobs = torch.stack([torch.log_softmax(step[0].float(), -1)[t] for step, t in zip(out.logits, theirs)])
    assert (ours.logprobs[0] - their_logprobs).abs().max().item() <= FP32_TOLERANCE


def test_bf16_logprobs_err_no_more_than_twice_transformers_bf16(reference, model_dir):
    seq = tokens((BF16_SEQUENCE_LENGTH,), seed=11)
    exact = hf_token_logprobs(reference.hf, seq)  # transformers in fp32: the reference
    hf_bf16 = copy.deepcopy(reference.hf).to(torch.bfloat16)
    hf_error = (hf_token_logprobs(hf_bf16, seq) - exact).abs().max().item()
    model = load_model(str(model_dir), CPU, torch.bfloat16)
    ours = sequence_logprobs(model, [seq])[0]
    our_error = (ours - exact).abs().max().item()
    assert hf_error > 0  # bf16 really ran
    assert our_error <= 2 * hf_error, (our_error, hf_error)


TEMPERATURE = 0.7


def seeded_params(**overrides) -> SampleParams:
    base = dict(n=3, max_new_tokens=20, temperature=TEMPERATURE, top_p=0.9, top_k=20, stop_token_ids=(), seed=17)
    return SampleParams(**{**base, **overrides})


def test_sampled_logprobs_are_transformers_log_softmax_at_the_temperature(reference):
    """Each sampled token's log-prob is transformers' log_softmax(logits / T) on the same
    tokens (top-k/top-p left out, as TRL scores the policy), not the T = 1 value."""
    prompt = tokens((GREEDY_PROMPT_LENGTH,), seed=8)
    model = load_model(str(reference.dirs["transformers"]), CPU, torch.float32)
    ours = sample(model, [prompt], seeded_params())
    for row in range(3):
        completion = ours.tokens[row].long()
        with torch.no_grad():
            logits = reference.hf(input_ids=torch.cat([prompt, completion])[None]).logits.float()[0]
        logits = logits[GREEDY_PROMPT_LENGTH - 1 : -1]
        at_t = torch.log_softmax(logits / TEMPERATURE, -1).gather(-1, completion[:, None]).squeeze(-1)
        at_one = torch.log_softmax(logits, -1).gather(-1, completion[:, None]).squeeze(-1)
        assert (ours.logprobs[row] - at_t).abs().max().item() <= FP32_TOLERANCE, row
        assert (ours.logprobs[row] - at_one).abs().max().item() > 1e-2, row


def test_shared_prompts_through_static_steps_sample_as_one_prefill_per_row(reference):
    """One prefill per prompt, copied to its samples, then fixed-shape steps: the same samples
    as a prefill per row and the growing cache, for a fixed seed; padded prompts, so the window
    and the padding both mask."""
    prompts = [tokens((n,), seed=20 + n) for n in (GREEDY_PROMPT_LENGTH, 5)]
    model = load_model(str(reference.dirs["transformers"]), CPU, torch.float32)
    shared = sample(model, prompts, seeded_params(decoder="static"))
    unshared = sample(model, prompts, seeded_params(decoder="hidden_states", share_prompts=False))
    assert shared.tokens.tolist() == unshared.tokens.tolist()
    assert (shared.logprobs - unshared.logprobs).abs().max().item() <= FP32_TOLERANCE
    assert (shared.prefill_tokens, unshared.prefill_tokens) == (2 * GREEDY_PROMPT_LENGTH, 6 * GREEDY_PROMPT_LENGTH)


class Ctx(RequestContext):
    def __init__(self):
        super().__init__(request_id=1, cancel_event=threading.Event(), client="pytest")


def lora_trained_worker(model_dir: Path) -> Worker:
    """Model "m" loaded by the bridge's ops, given LoRA adapters and trained for 5 steps on a
    cross-entropy loss: the path a notebook takes before exporting."""
    worker, ctx = Worker("test", CPU), Ctx()
    worker.load_model(
        {
            "name": "m",
            "path": str(model_dir),
            "dtype": "float32",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
        ctx,
    )
    worker.apply_lora({"model": "m", "rank": 4, "alpha": 8, "dropout": 0.0, "targets": "all-linear", "seed": 0}, ctx)
    lengths = torch.tensor([20, 14], dtype=torch.int32)
    ids = tokens((int(lengths.sum()),), seed=3).to(torch.int32)
    for _ in range(5):
        worker.forward_backward(
            {
                "model": "m",
                "token_ids": ids,
                "lengths": lengths,
                "example_lengths": None,
                "loss_scale": 1.0,
                "gradient_checkpointing": False,
                "loss": {"kind": "cross_entropy", "weights": torch.ones(ids.numel()), "num_tokens": None},
            },
            ctx,
        )
        worker.optim_step(
            {
                "model": "m",
                "lr": 1e-2,
                "beta1": 0.9,
                "beta2": 0.999,
                "eps": 1e-8,
                "weight_decay": 0.0,
                "max_grad_norm": 1.0,
            },
            ctx,
        )
    return worker


def test_lora_export_reloads_in_transformers_with_equal_logits(reference, model_dir, tmp_path):
    worker = lora_trained_worker(model_dir)
    worker.export_model(
        {
            "model": "m",
            "dir": str(tmp_path / "export"),
            "shard_bytes": None,
            "dtype": "float32",
            "metadata": {},
            "onnx": None,
        },
        Ctx(),
    )
    ids, pad, mask = padded_batch(seed=20)
    trained = thinkcells_logits(worker.get("m").model, ids, pad)
    base = hf_logits(reference.hf, ids, mask)
    assert max_diff_at_real_positions(trained, base, mask) > 1e-2  # the adapters learned something

    reloaded, info = AutoModelForCausalLM.from_pretrained(
        tmp_path / "export", attn_implementation="eager", dtype=torch.float32, output_loading_info=True
    )
    # The bridge holds a multimodal checkpoint's text model only, and exports that: a text-only
    # Gemma3ForCausalLM (config.json: text_config's fields, model_type gemma3_text).
    expected = "Gemma3ForCausalLM" if reference.family == "gemma3" else type(reference.hf).__name__
    assert type(reloaded).__name__ == expected
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert max_diff_at_real_positions(trained, hf_logits(reloaded.eval(), ids, mask), mask) <= FP32_TOLERANCE


def tensor_names(path: Path) -> list[str]:
    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def test_gemma3_text_weights_load_under_transformers_internal_names(tmp_path):
    """transformers 5 saves Gemma3ForConditionalGeneration under the Hub's names by default
    (language_model.model.*); with save_original_format=False it writes its own module names
    (model.language_model.*). Checkpoints of both kinds circulate."""
    ref = build_reference("gemma3", tmp_path / "build")
    internal = tmp_path / "internal"
    ref.hf.save_pretrained(internal, save_original_format=False)
    assert any(n.startswith("model.language_model.layers.") for n in tensor_names(internal / "model.safetensors"))
    ids, pad, mask = padded_batch()
    model = load_model(str(internal), CPU, torch.float32)
    assert (
        max_diff_at_real_positions(thinkcells_logits(model, ids, pad), hf_logits(ref.hf, ids, mask), mask)
        <= FP32_TOLERANCE
    )
