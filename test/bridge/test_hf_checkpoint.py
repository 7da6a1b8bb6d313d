import json
import re

import pytest
import torch
from thinkcells_bridge.hf_checkpoint import CheckpointError, load_state_dict, read_config, save_checkpoint
from thinkcells_bridge.safetensors import read_safetensors

CONFIG = {"model_type": "llama", "hidden_size": 8}


def small_state_dict():
    g = torch.Generator().manual_seed(0)
    sd = {"model.embed_tokens.weight": torch.randn(16, 8, generator=g)}
    for i in range(3):
        sd[f"model.layers.{i}.mlp.up_proj.weight"] = torch.randn(12, 8, generator=g).to(torch.bfloat16)
        sd[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(8)
    return sd


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def test_single_file_round_trip(tmp_path):
    sd = small_state_dict()
    out = tmp_path / "new" / "model"
    save_checkpoint(out, CONFIG, sd)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert read_config(out) == CONFIG
    assert_same(load_state_dict(out), sd)
    assert read_safetensors(out / "model.safetensors")[1] == {"format": "pt"}


def test_sharded_round_trip(tmp_path):
    sd = small_state_dict()
    max_bytes = 600
    save_checkpoint(tmp_path, CONFIG, sd, max_shard_bytes=max_bytes, metadata={"format": "pt", "src": "test"})
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1
    assert all(re.fullmatch(rf"model-\d{{5}}-of-{len(shards):05d}\.safetensors", s) for s in shards)
    assert not (tmp_path / "model.safetensors").exists()

    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sd.values())
    assert sorted(index["weight_map"]) == sorted(sd)
    assert sorted(set(index["weight_map"].values())) == shards
    for shard in shards:
        tensors, metadata = read_safetensors(tmp_path / shard)
        assert metadata == {"format": "pt", "src": "test"}
        assert len(tensors) == 1 or sum(t.numel() * t.element_size() for t in tensors.values()) <= max_bytes

    assert_same(load_state_dict(tmp_path), sd)


def test_resave_replaces_previous_layout(tmp_path):
    sd = small_state_dict()
    save_checkpoint(tmp_path, CONFIG, sd, max_shard_bytes=600)
    save_checkpoint(tmp_path, CONFIG, sd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    save_checkpoint(tmp_path, CONFIG, sd, max_shard_bytes=600)
    assert not (tmp_path / "model.safetensors").exists()
    assert_same(load_state_dict(tmp_path), sd)


def test_missing_shard_names_shard_and_tensor(tmp_path):
    save_checkpoint(tmp_path, CONFIG, small_state_dict(), max_shard_bytes=600)
    weight_map = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    shard = f"model-00002-of-{len(set(weight_map.values())):05d}.safetensors"
    (tmp_path / shard).unlink()
    with pytest.raises(CheckpointError) as info:
        load_state_dict(tmp_path)
    msg = str(info.value)
    assert shard in msg
    assert any(repr(name) in msg for name, s in weight_map.items() if s == shard)


def test_tensor_listed_but_absent_from_shard(tmp_path):
    save_checkpoint(tmp_path, CONFIG, small_state_dict(), max_shard_bytes=600)
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["ghost.weight"] = f"model-00001-of-{len(set(index['weight_map'].values())):05d}.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as info:
        load_state_dict(tmp_path)
    assert "'ghost.weight'" in str(info.value) and "model-00001-of-" in str(info.value)


def test_no_weights_says_what_was_looked_for(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_state_dict(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and "model.safetensors" in msg and "model.safetensors.index.json" in msg


def test_invalid_index_names_the_file(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        load_state_dict(tmp_path)


def test_read_config_errors_name_the_path(tmp_path):
    with pytest.raises(CheckpointError) as info:
        read_config(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value) and "not found" in str(info.value)
    (tmp_path / "config.json").write_text('{"hidden_size": 8,}')
    with pytest.raises(CheckpointError) as info:
        read_config(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value) and "JSON" in str(info.value)
