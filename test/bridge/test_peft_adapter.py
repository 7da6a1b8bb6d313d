"""LoRA adapters in PEFT's format, checked against peft itself both ways on a Llama-family and a
Gemma 3 model (small random transformers models from published configs, test_architectures'
build_reference): peft applies what thinkcells trained and saved with thinkcells' logits, and
thinkcells applies what peft saved with peft's logits (plain LoRA and rsLoRA, list, regex and
all-linear targets). The files match peft's own save for the same settings, and what thinkcells
cannot apply is refused naming the field."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model  # pinned in requirements.txt [test]: never skipped
from test_architectures import (
    FP32_TOLERANCE,
    build_reference,
    hf_logits,
    max_diff_at_real_positions,
    padded_batch,
    thinkcells_logits,
)
from test_export import Ctx
from thinkcells_bridge.lora import LoRALinear, has_lora
from thinkcells_bridge.ops import Worker
from thinkcells_bridge.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_FORMAT_VERSION, AdapterError
from thinkcells_bridge.protocol import validate_request
from thinkcells_bridge.safetensors import read_safetensors

CPU = torch.device("cpu")
FAMILIES = ("llama", "gemma3_text")


def call(worker, op, body, validate=True):
    if validate:
        validate_request({"id": 1, "op": op, "body": body, "buffers": []})  # the generated schema accepts it
    return getattr(worker, op)(body, Ctx())


@pytest.fixture(scope="module", params=FAMILIES)
def reference(request, tmp_path_factory):
    return build_reference(request.param, tmp_path_factory.mktemp(request.param))


def loaded_worker(reference, name="m") -> Worker:
    worker = Worker("test", CPU)
    call(
        worker,
        "load_model",
        {
            "name": name,
            "path": str(reference.dirs["transformers"]),
            "dtype": "float32",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
    )
    return worker


def train(worker, steps=3, name="m", vocab=400):
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        lengths = torch.tensor([12, 9], dtype=torch.int32)
        ids = torch.randint(3, vocab, (int(lengths.sum()),), generator=g, dtype=torch.int32)
        body = {
            "model": name,
            "token_ids": ids,
            "lengths": lengths,
            "example_lengths": None,
            "loss_scale": 1.0,
            "gradient_checkpointing": False,
            "loss": {"kind": "cross_entropy", "weights": torch.ones(ids.numel()), "num_tokens": None},
        }
        call(worker, "forward_backward", body, validate=False)
        out = call(
            worker,
            "optim_step",
            {
                "model": name,
                "lr": 1e-2,
                "beta1": 0.9,
                "beta2": 0.999,
                "eps": 1e-8,
                "weight_decay": 0.0,
                "max_grad_norm": None,
            },
        )
        assert not out["skipped"]


def logits_of(worker, name="m"):
    ids, pad, mask = padded_batch()
    return thinkcells_logits(worker.get(name).model, ids, pad), mask


def peft_logits(peft_model):
    ids, _, mask = padded_batch()
    return hf_logits(peft_model.eval(), ids, mask)


def base_logits(reference):
    ids, _, mask = padded_batch()
    return hf_logits(reference.hf, ids, mask)


def peft_model_of(reference, **config) -> PeftModel:
    """peft's LoRA on a copy of the reference model, every B non-zero (init_lora_weights=False)."""
    torch.manual_seed(3)
    model = get_peft_model(
        copy.deepcopy(reference.hf), LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **config)
    )
    return model.eval()


def test_peft_applies_what_thinkcells_trained(reference, tmp_path):
    worker = loaded_worker(reference)
    call(
        worker, "apply_lora", {"model": "m", "rank": 4, "alpha": 8, "dropout": 0.0, "targets": "all-linear", "seed": 0}
    )
    train(worker)
    layers = [m for m in worker.get("m").model.modules() if isinstance(m, LoRALinear)]
    assert all(layer.lora_B.abs().sum() > 0 for layer in layers)
    r = call(
        worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "adapter"), "base_model_name_or_path": "org/base"}
    )
    assert r["files"] == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
    assert r["settings"] == {"rank": 4, "alpha": 8, "dropout": 0.0, "targets": "all-linear", "seed": 0}
    assert r["dtype"] == "float32" and r["parameters"] == sum(
        layer.lora_A.numel() + layer.lora_B.numel() for layer in layers
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left

    ours, mask = logits_of(worker)
    theirs = peft_logits(PeftModel.from_pretrained(copy.deepcopy(reference.hf), tmp_path / "adapter"))
    assert max_diff_at_real_positions(ours, theirs, mask) <= FP32_TOLERANCE
    assert max_diff_at_real_positions(theirs, base_logits(reference), mask) > 100 * FP32_TOLERANCE


def test_files_match_peft_own_save_for_the_same_settings(reference, tmp_path):
    settings = dict(r=4, lora_alpha=16, lora_dropout=0.05, target_modules=["v_proj", "q_proj", "down_proj"])
    theirs_dir = tmp_path / "peft"
    peft_model_of(reference, **settings).save_pretrained(theirs_dir)
    worker = loaded_worker(reference)
    call(
        worker,
        "apply_lora",
        {
            "model": "m",
            "rank": 4,
            "alpha": 16,
            "dropout": 0.05,
            "targets": ["q_proj", "v_proj", "down_proj"],
            "seed": 0,
        },
    )
    ours_dir = tmp_path / "ours"
    call(worker, "save_adapter", {"model": "m", "dir": str(ours_dir), "base_model_name_or_path": None})

    ours, ours_meta = read_safetensors(ours_dir / ADAPTER_WEIGHTS)
    theirs, theirs_meta = read_safetensors(theirs_dir / ADAPTER_WEIGHTS)
    assert sorted(ours) == sorted(theirs)
    assert any(k.startswith("base_model.model.model.layers.0.self_attn.q_proj.lora_A") for k in ours)
    assert {k: (t.shape, t.dtype) for k, t in ours.items()} == {k: (t.shape, t.dtype) for k, t in theirs.items()}
    assert ours_meta == theirs_meta == {"format": "pt"}

    ours_config = json.loads((ours_dir / ADAPTER_CONFIG).read_text())
    theirs_config = json.loads((theirs_dir / ADAPTER_CONFIG).read_text())
    assert sorted(ours_config) == sorted(theirs_config)
    assert ours_config["target_modules"] == ["down_proj", "q_proj", "v_proj"]
    assert ours_config["base_model_name_or_path"] == str(reference.dirs["transformers"])
    assert theirs_config["peft_version"].partition("@")[0].startswith(PEFT_FORMAT_VERSION)
    for key in ("target_modules", "base_model_name_or_path", "peft_version", "init_lora_weights"):
        ours_config.pop(key), theirs_config.pop(key)
    assert ours_config == theirs_config  # init_lora_weights: false above only to make B random


@pytest.mark.parametrize("variant", ["all-linear", "rslora-regex"])
def test_thinkcells_applies_what_peft_saved(reference, tmp_path, variant):
    if variant == "all-linear":
        config = dict(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    else:
        config = dict(
            r=4,
            lora_alpha=16,
            target_modules=r"model\.layers\.\d+\.(self_attn\.(q|v)_proj|mlp\.up_proj)",
            lora_dropout=0.1,
            use_rslora=True,
        )
    theirs_model = peft_model_of(reference, **config)
    theirs_model.save_pretrained(tmp_path / "peft")
    worker = loaded_worker(reference)
    info = call(worker, "load_adapter", {"model": "m", "dir": str(tmp_path / "peft")})
    assert info["trainable_parameters"] == sum(p.numel() for p in theirs_model.parameters() if p.requires_grad)
    lora = worker.get("m").lora
    if variant == "all-linear":
        assert lora == {"rank": 4, "alpha": 8, "dropout": 0.0, "targets": list(info["lora_targets"]), "seed": 0}
    else:
        assert lora == {
            "rank": 4,
            "alpha": 16,
            "dropout": 0.1,
            "targets": ["q_proj", "v_proj", "up_proj"],
            "seed": 0,
            "use_rslora": True,
        }
    expected = peft_logits(theirs_model)
    ours, mask = logits_of(worker)  # eval: dropout off, as in peft's eval mode
    assert max_diff_at_real_positions(ours, expected, mask) <= FP32_TOLERANCE
    assert max_diff_at_real_positions(ours, base_logits(reference), mask) > 100 * FP32_TOLERANCE

    # Saved back, the same tensors.
    call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "again"), "base_model_name_or_path": None})
    again, _ = read_safetensors(tmp_path / "again" / ADAPTER_WEIGHTS)
    original, _ = read_safetensors(tmp_path / "peft" / ADAPTER_WEIGHTS)
    assert sorted(again) == sorted(original) and all(torch.equal(again[k], original[k]) for k in again)
    assert json.loads((tmp_path / "again" / ADAPTER_CONFIG).read_text())["use_rslora"] == (variant != "all-linear")

    # Training state keeps the adapter's settings (rsLoRA's scale too): a fresh bridge resumes it.
    call(worker, "save_state", {"model": "m", "dir": str(tmp_path / "state")})
    fresh = loaded_worker(reference)
    call(fresh, "load_state", {"model": "m", "dir": str(tmp_path / "state")})
    resumed, _ = logits_of(fresh)
    assert max_diff_at_real_positions(resumed, ours, mask) == 0


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build_reference("llama", tmp_path_factory.mktemp("llama-refusals"))


def saved_by_peft(reference, directory, **config):
    peft_model_of(reference, **config).save_pretrained(directory)
    return directory


def refused(worker, directory, *fragments):
    before = {k: v.clone() for k, v in worker.get("m").model.state_dict().items()}
    settings = worker.get("m").lora
    with pytest.raises(AdapterError) as e:
        call(worker, "load_adapter", {"model": "m", "dir": str(directory)})
    for fragment in fragments:
        assert fragment in str(e.value), (fragment, str(e.value))
    after = worker.get("m").model.state_dict()
    assert sorted(after) == sorted(before) and all(torch.equal(after[k], before[k]) for k in after)  # untouched
    assert worker.get("m").lora == settings
    return str(e.value)


def edited(source, target, config_edit=None, tensors_edit=None):
    from thinkcells_bridge.safetensors import write_safetensors

    target.mkdir()
    config = json.loads((source / ADAPTER_CONFIG).read_text())
    config.update(config_edit or {})
    (target / ADAPTER_CONFIG).write_text(json.dumps(config))
    tensors, meta = read_safetensors(source / ADAPTER_WEIGHTS)
    tensors = dict(tensors)
    if tensors_edit:
        tensors_edit(tensors)
    write_safetensors(target / ADAPTER_WEIGHTS, tensors, meta)
    return target


def test_what_thinkcells_cannot_apply_is_refused_naming_the_field(llama, tmp_path):
    worker = loaded_worker(llama)
    call(worker, "apply_lora", {"model": "m", "rank": 2, "alpha": 4, "dropout": 0.0, "targets": ["q_proj"], "seed": 1})
    dora = saved_by_peft(
        llama, tmp_path / "dora", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True
    )
    refused(worker, dora, str(dora / ADAPTER_CONFIG), "use_dora", "DoRA")
    head = saved_by_peft(llama, tmp_path / "head", r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"])
    refused(worker, head, "'lm_head'", "does not adapt", "q_proj, k_proj")
    good = saved_by_peft(llama, tmp_path / "good", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    cases = {
        "peft_type": ({"peft_type": "IA3"}, "only LoRA"),
        "rank_pattern": ({"rank_pattern": {"q_proj": 8}}, "per-module ranks"),
        "alpha_pattern": ({"alpha_pattern": {"q_proj": 8}}, "per-module ranks or alphas"),
        "bias": ({"bias": "all"}, "trained biases"),
        "modules_to_save": ({"modules_to_save": ["lm_head"]}, "not supported"),
        "layers_to_transform": ({"layers_to_transform": [0]}, "every decoder layer"),
        "fan_in_fan_out": ({"fan_in_fan_out": True}, "Conv1D"),
        "task_type": ({"task_type": "SEQ_CLS"}, "CAUSAL_LM"),
        "target_modules": ({"target_modules": ["q_proj"]}, "does not name"),
        "r": ({"r": 8}, "has shape [4, 128], expected [8, 128]"),
    }
    for i, (edit, fragment) in enumerate(cases.values()):
        refused(worker, edited(good, tmp_path / f"edit{i}", edit), f"{ADAPTER_CONFIG}", fragment)
    key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"
    refused(worker, edited(good, tmp_path / "missing", tensors_edit=lambda t: t.pop(key)), f"{key} is missing")
    refused(
        worker,
        edited(
            good,
            tmp_path / "some-layers",
            tensors_edit=lambda t: [t.pop(k) for k in list(t) if ".layers.1.self_attn.v_proj" in k],
        ),
        "model.layers.1.self_attn.v_proj.lora_A.weight is missing",
        "only in some",
    )
    refused(
        worker,
        edited(
            good,
            tmp_path / "extra",
            tensors_edit=lambda t: t.update(
                {"base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector": torch.ones(32)}
            ),
        ),
        "unexpected tensor",
        "DoRA magnitude",
    )
    refused(worker, tmp_path / "nowhere", "no such adapter directory")
    (tmp_path / "empty").mkdir()
    refused(worker, tmp_path / "empty", f"{ADAPTER_CONFIG} is missing")


def test_saving_refuses_a_model_without_adapters_and_unrelated_directories(llama, tmp_path):
    worker = loaded_worker(llama)
    with pytest.raises(ValueError, match="has no LoRA adapters to save"):
        call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "a"), "base_model_name_or_path": None})
    assert not (tmp_path / "a").exists()
    call(worker, "apply_lora", {"model": "m", "rank": 2, "alpha": 4, "dropout": 0.0, "targets": ["q_proj"], "seed": 1})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an adapter directory"):
        call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "notes"), "base_model_name_or_path": None})
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    # An adapter directory is replaced whole.
    call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "a"), "base_model_name_or_path": None})
    call(worker, "apply_lora", {"model": "m", "rank": 3, "alpha": 4, "dropout": 0.0, "targets": ["v_proj"], "seed": 1})
    call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "a"), "base_model_name_or_path": None})
    config = json.loads((tmp_path / "a" / ADAPTER_CONFIG).read_text())
    assert (config["r"], config["target_modules"]) == (3, ["v_proj"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "notes"]
    # A model that loaded an adapter has adapters and trains them.
    call(worker, "remove_lora", {"model": "m"})
    info = call(worker, "load_adapter", {"model": "m", "dir": str(tmp_path / "a")})
    assert has_lora(worker.get("m").model) and info["trainable_parameters"] == 2 * 3 * (128 + 32)


def test_a_multimodal_gemma3_adapter_is_its_text_model_adapter(tmp_path_factory, tmp_path):
    """Gemma 3 4B and up: the bridge holds the text model of Gemma3ForConditionalGeneration.
    Its adapter is written under that model's names (model.language_model.*) and confined to
    the text model; peft's adapter on the whole model loads without the vision tower's part."""
    reference = build_reference("gemma3", tmp_path_factory.mktemp("gemma3"))
    worker = loaded_worker(reference)
    call(
        worker,
        "apply_lora",
        {"model": "m", "rank": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj"], "seed": 0},
    )
    train(worker, steps=2)
    call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "ours"), "base_model_name_or_path": None})
    tensors, _ = read_safetensors(tmp_path / "ours" / ADAPTER_WEIGHTS)
    assert "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight" in tensors
    ours, mask = logits_of(worker)
    theirs = PeftModel.from_pretrained(copy.deepcopy(reference.hf), tmp_path / "ours")
    assert not any("vision_tower" in n for n, _ in theirs.named_modules() if n.endswith("lora_A"))
    assert max_diff_at_real_positions(ours, peft_logits(theirs), mask) <= FP32_TOLERANCE

    # peft's own, on the whole model: its vision-tower adapters are no part of the text model.
    peft_model = peft_model_of(reference, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    assert any("vision_tower" in n for n, _ in peft_model.named_modules() if n.endswith("lora_A"))
    peft_model.save_pretrained(tmp_path / "peft")
    fresh = loaded_worker(reference)
    call(fresh, "load_adapter", {"model": "m", "dir": str(tmp_path / "peft")})
    ours, mask = logits_of(fresh)
    assert max_diff_at_real_positions(ours, peft_logits(peft_model), mask) <= FP32_TOLERANCE
    assert max_diff_at_real_positions(ours, base_logits(reference), mask) > 100 * FP32_TOLERANCE


def test_an_architecture_transformers_runs_for_the_bridge(tmp_path, monkeypatch):
    """GPT-NeoX (no native code: transformers' own modules, its own module names), both ways."""
    import pathlib
    import runpy
    import sys

    from transformers import AutoModelForCausalLM

    script = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "make_random_hf.py"
    monkeypatch.setattr(sys, "argv", [str(script), "gpt_neox", str(tmp_path / "base")])
    runpy.run_path(str(script))  # in process: no second transformers import
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.float32).eval()
    worker = Worker("test", CPU)
    call(
        worker,
        "load_model",
        {
            "name": "m",
            "path": str(tmp_path / "base"),
            "dtype": "float32",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
    )
    ids = torch.randint(3, 200, (2, 10), generator=torch.Generator().manual_seed(0))
    pad = torch.zeros(2, dtype=torch.long)
    mask = torch.ones_like(ids)

    def ours():
        return thinkcells_logits(worker.get("m").model, ids, pad)

    torch.manual_seed(3)
    theirs = get_peft_model(
        copy.deepcopy(hf),
        LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, r=2, lora_alpha=4, target_modules="all-linear"),
    ).eval()
    theirs.save_pretrained(tmp_path / "peft")
    call(worker, "load_adapter", {"model": "m", "dir": str(tmp_path / "peft")})
    assert worker.get("m").lora["targets"] == ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
    assert max_diff_at_real_positions(ours(), hf_logits(theirs, ids, mask), mask) <= FP32_TOLERANCE

    train(worker, steps=1, vocab=200)
    call(worker, "save_adapter", {"model": "m", "dir": str(tmp_path / "ours"), "base_model_name_or_path": None})
    back = PeftModel.from_pretrained(copy.deepcopy(hf), tmp_path / "ours")
    assert max_diff_at_real_positions(ours(), hf_logits(back, ids, mask), mask) <= FP32_TOLERANCE
    assert max_diff_at_real_positions(ours(), hf_logits(theirs, ids, mask), mask) > 100 * FP32_TOLERANCE  # trained on
