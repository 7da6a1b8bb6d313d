"""Exporting: LoRA merged into the base weights, a Hugging Face directory that loads back as the
adapter model ran, shards, quantized bases, atomic replacement, and the ONNX trace."""

import json
import os
import threading

import pytest
import torch
from bridge_wire import llama_config, perturb_adapters, qwen2_config, random_model
from thinkcells_bridge import export as export_module
from thinkcells_bridge.export import ExportError, merged_state_dict
from thinkcells_bridge.hf_checkpoint import INDEX, load_state_dict, read_config, save_checkpoint
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.lora import LoRALinear, apply_lora, merged_weight, set_adapters
from thinkcells_bridge.model import ModelConfig
from thinkcells_bridge.onnx_export import TraceableForward, export_onnx, plain_fp32_model, reference_logits
from thinkcells_bridge.ops import Worker
from thinkcells_bridge.protocol import validate_request
from thinkcells_bridge.safetensors import read_safetensors
from thinkcells_bridge.sampling import SampleParams, sample
from torch import nn

CPU = torch.device("cpu")


class Ctx:
    request_id = 1
    client = "pytest (connection 1)"

    def __init__(self):
        self.cancel_event = threading.Event()

    def cancelled(self):
        return self.cancel_event.is_set()


def ids(shape=(2, 9), seed=0):
    return torch.randint(3, 97, shape, generator=torch.Generator().manual_seed(seed))


def call(worker, op, body):
    validate_request({"id": 1, "op": op, "body": body, "buffers": []})  # the generated schema accepts it
    return getattr(worker, op)(body, Ctx())


def export_body(model, directory, **overrides):
    body = {"model": model, "dir": str(directory), "shard_bytes": None, "dtype": "auto", "metadata": {}, "onnx": None}
    body.update(overrides)
    return body


def base_dir(tmp_path, config, seed=0, name="base"):
    directory = tmp_path / name
    save_checkpoint(directory, config, random_model(config, seed).state_dict())
    return directory


def trained_worker(tmp_path, config=None, quantize=None, rope_scaling=None):
    """A worker holding model "m" with perturbed (i.e. trained) LoRA adapters."""
    worker = Worker("test", CPU)
    directory = base_dir(tmp_path, config or qwen2_config())
    call(
        worker,
        "load_model",
        {
            "name": "m",
            "path": str(directory),
            "dtype": "float32",
            "rope_scaling": rope_scaling,
            "quantize": quantize,
            "allow_non_finite": False,
            "replace": False,
        },
    )
    call(
        worker, "apply_lora", {"model": "m", "rank": 4, "alpha": 8, "dropout": 0.0, "targets": "all-linear", "seed": 0}
    )
    perturb_adapters(worker.get("m").model)
    return worker, directory


def greedy(model, prompt, n=20):
    params = SampleParams(n=1, max_new_tokens=n, temperature=0, top_p=1, top_k=0, stop_token_ids=(), seed=None)
    return sample(model, [prompt], params).tokens[0].tolist()


def test_a_merged_linear_applies_base_plus_adapter():
    layer = LoRALinear.wrap(nn.Linear(6, 5), rank=3, alpha=6, dropout=0.0).eval()
    with torch.no_grad():
        layer.lora_B.normal_()
    model = nn.Module()
    model.proj = layer
    model.config = None
    weights, merged = merged_state_dict(model)
    assert merged == ["proj"] and sorted(weights) == ["proj.bias", "proj.weight"]
    x = torch.randn(4, 6)
    with torch.no_grad():
        base = nn.functional.linear(x, layer.weight, layer.bias)
        adapter = 2.0 * (x @ layer.lora_A.t()) @ layer.lora_B.t()  # scale = alpha / rank
        assert torch.allclose(
            nn.functional.linear(x, weights["proj.weight"], weights["proj.bias"]), base + adapter, atol=1e-5
        )
        # Bit for bit what sampling applies (lora.merged_weight), and disabled adapters still merge.
        assert torch.equal(weights["proj.weight"], merged_weight(layer))
        layer.enabled = False
        assert torch.equal(merged_state_dict(model)[0]["proj.weight"], weights["proj.weight"])
    # Copies: changing the live layer does not change the export.
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert not torch.equal(weights["proj.weight"], merged_weight(layer))


@pytest.mark.parametrize("config", [llama_config(), qwen2_config()], ids=["llama-tied-gqa", "qwen2-bias"])
def test_export_reloads_as_the_adapter_model(tmp_path, config):
    worker, base = trained_worker(tmp_path, config)
    live = worker.get("m").model
    before = {k: v.clone() for k, v in live.state_dict().items()}
    x = ids()
    with torch.no_grad():
        adapted = reference_logits(live, x)
    result = call(worker, "export_model", export_body("m", tmp_path / "out"))
    assert result["files"] == ["config.json", "generation_config.json", "model.safetensors"]
    assert result["lora"]["rank"] == 4 and result["lora"]["merged_modules"] == 7 * config["num_hidden_layers"]
    assert result["dtype"] == "float32" and result["onnx"] is None

    # The live model is untouched: same tensors, adapters still there and trainable.
    assert all(torch.equal(v, before[k]) for k, v in live.state_dict().items())
    assert any(isinstance(m, LoRALinear) for m in live.modules())
    assert all(p.requires_grad == ("lora_" in n) for n, p in live.named_parameters())

    exported = load_model(str(tmp_path / "out"), CPU, torch.float32)
    assert not any(isinstance(m, LoRALinear) for m in exported.modules())
    with torch.no_grad():
        assert torch.allclose(reference_logits(exported, x), adapted, atol=1e-4)
    prompt = x[0, :4]
    assert greedy(exported, prompt) == greedy(live, prompt)

    # A fresh worker loading the export samples the same greedy tokens through the op.
    call(
        worker,
        "load_model",
        {
            "name": "e",
            "path": str(tmp_path / "out"),
            "dtype": "float32",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
    )
    body = {
        "prompt_ids": prompt.to(torch.int32),
        "prompt_lengths": torch.tensor([4], dtype=torch.int32),
        "n": 1,
        "max_new_tokens": 24,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "stop_token_ids": [],
        "seed": None,
        "use_cache": True,
        "entropy": False,
    }
    assert torch.equal(
        worker.sample({"model": "e", **body}, Ctx())["tokens"], worker.sample({"model": "m", **body}, Ctx())["tokens"]
    )

    written = read_config(tmp_path / "out")
    assert written["torch_dtype"] == "float32"
    assert {k: v for k, v in written.items() if k != "torch_dtype"} == read_config(base)
    generation = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert generation == {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": config["eos_token_id"]}


def test_sharded_export_with_metadata_bf16_and_no_value_head(tmp_path):
    worker, _ = trained_worker(tmp_path, llama_config())
    call(worker, "add_value_head", {"model": "m"})
    live = worker.get("m").model
    result = call(worker, "export_model", export_body("m", tmp_path / "out", shard_bytes=8000, metadata={"run": "r1"}))
    shards = [f for f in result["files"] if f.startswith("model-")]
    assert len(shards) > 2 and INDEX in result["files"] and "model.safetensors" not in result["files"]
    index = json.loads((tmp_path / "out" / INDEX).read_text())
    assert index["metadata"]["total_size"] == result["weight_bytes"]
    weights = load_state_dict(tmp_path / "out")
    assert not any(k.startswith("value_head") or "lora_" in k for k in weights)
    assert result["parameters"] == sum(t.numel() for t in weights.values())
    merged, _ = merged_state_dict(live)
    assert weights.keys() == merged.keys() and all(torch.equal(weights[k], merged[k]) for k in weights)
    assert read_safetensors(tmp_path / "out" / shards[0])[1] == {"format": "pt", "run": "r1"}

    half = call(worker, "export_model", export_body("m", tmp_path / "bf16", dtype="bfloat16"))
    assert half["dtype"] == "bfloat16" and half["weight_bytes"] * 2 == result["weight_bytes"]
    assert read_config(tmp_path / "bf16")["torch_dtype"] == "bfloat16"
    bf16 = load_state_dict(tmp_path / "bf16")
    assert all(t.dtype == torch.bfloat16 for t in bf16.values())
    # Merged in fp32, rounded once.
    assert all(torch.equal(bf16[k], merged[k].to(torch.bfloat16)) for k in bf16)


@pytest.mark.parametrize("scheme", ["int8", "nf4"])
def test_a_quantized_base_is_dequantized_then_merged(tmp_path, scheme):
    worker, _ = trained_worker(tmp_path, llama_config(), quantize=scheme)
    live = worker.get("m").model
    call(worker, "export_model", export_body("m", tmp_path / "out"))
    assert "quantization_config" not in read_config(tmp_path / "out")
    exported = load_model(str(tmp_path / "out"), CPU, torch.float32)
    x = ids()
    with torch.no_grad():
        assert torch.allclose(reference_logits(exported, x), reference_logits(live, x), atol=1e-4)
    assert greedy(exported, x[0, :4]) == greedy(live, x[0, :4])


def test_rope_scaling_set_at_load_is_written_into_the_config(tmp_path):
    worker, _ = trained_worker(
        tmp_path, llama_config(), rope_scaling={"type": "yarn", "factor": None, "target_length": 256}
    )
    call(worker, "export_model", export_body("m", tmp_path / "out"))
    config = read_config(tmp_path / "out")
    assert config["max_position_embeddings"] == 256
    assert (
        config["rope_scaling"]["rope_type"] == "yarn"
        and config["rope_scaling"]["original_max_position_embeddings"] == 64
    )
    assert ModelConfig.from_hf(config) == worker.get("m").model.config


def test_export_replaces_only_model_directories_and_fails_cleanly(tmp_path, monkeypatch):
    worker, _ = trained_worker(tmp_path, llama_config())
    out = tmp_path / "out"
    call(worker, "export_model", export_body("m", out))
    first = (out / "model.safetensors").read_bytes()
    with torch.no_grad():
        for p in worker.get("m").model.parameters():
            if p.requires_grad:
                p.add_(0.5)
    call(worker, "export_model", export_body("m", out))  # an earlier export is replaced
    assert (out / "model.safetensors").read_bytes() != first

    def crash(*args, **kwargs):
        raise OSError("disk full")

    second = (out / "model.safetensors").read_bytes()
    monkeypatch.setattr(export_module, "save_checkpoint", crash)
    with pytest.raises(OSError, match="disk full"):
        call(worker, "export_model", export_body("m", out))
    assert (out / "model.safetensors").read_bytes() == second  # the previous export stays whole
    assert sorted(os.listdir(tmp_path)) == ["base", "out"]  # no temporary directory left behind
    monkeypatch.undo()

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a model directory"):
        call(worker, "export_model", export_body("m", other))
    assert (other / "todo.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "config",
    [
        llama_config(),
        qwen2_config(),
        llama_config(
            num_key_value_heads=4,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        ),
    ],
    ids=["llama-gqa", "qwen2", "mha-llama3-rope"],
)
def test_the_traceable_forward_is_the_model_forward(config):
    model = random_model(config)
    wrapper = TraceableForward(model)
    for shape in [(1, 1), (3, 7), (2, 64)]:
        x = ids(shape, seed=shape[1])
        with torch.no_grad():
            assert torch.allclose(wrapper(x), reference_logits(model, x), atol=1e-5)


def test_onnx_export_is_checked_and_has_dynamic_batch_and_sequence(tmp_path):
    onnx = pytest.importorskip("onnx")
    worker, _ = trained_worker(tmp_path, qwen2_config())
    result = call(worker, "export_model", export_body("m", tmp_path / "out", onnx={"opset": 18}))
    path = tmp_path / "out" / "onnx" / "model.onnx"
    assert "onnx/model.onnx" in result["files"] and result["onnx"]["path"] == str(path)
    assert result["onnx"]["opset"] == 18 and result["onnx"]["max_abs_diff"] < 1e-5
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input_ids"] and [o.name for o in model.graph.output] == ["logits"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    out_dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == ["batch", "sequence", 97]

    standalone = call(worker, "export_onnx", {"model": "m", "path": str(tmp_path / "alone.onnx"), "opset": 20})
    assert standalone["opset"] == 20 and os.path.getsize(tmp_path / "alone.onnx") == standalone["bytes"]
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_plain_fp32_model_holds_the_merged_weights(tmp_path):
    model = random_model(llama_config())
    apply_lora(model, rank=2, alpha=4, dropout=0.0, targets=["q_proj", "down_proj"])
    perturb_adapters(model)
    set_adapters(model, True)
    weights, merged = merged_state_dict(model)
    assert len(merged) == 4
    plain = plain_fp32_model(model.config, weights)
    x = ids()
    with torch.no_grad():
        assert torch.allclose(reference_logits(plain, x), reference_logits(model, x), atol=1e-4)
    with pytest.raises(ValueError, match="opset 12"):
        export_onnx(plain, str(tmp_path / "x.onnx"), opset=12)
