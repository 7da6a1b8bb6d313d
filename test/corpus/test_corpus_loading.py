"""Security and fault corpus: loading a model directory (README.md here lists the cases)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from bridge_wire import llama_config, qwen2_config, random_model
from thinkcells_bridge import loading
from thinkcells_bridge.hf_checkpoint import CheckpointError, load_state_dict, read_config, save_checkpoint
from thinkcells_bridge.loading import check_memory, load_model
from thinkcells_bridge.model import CausalLM, ModelConfig, ModelConfigError
from thinkcells_bridge.ops import OpError, RequestContext, Worker
from thinkcells_bridge.safetensors import read_safetensors, write_safetensors
from thinkcells_bridge.sampling import Cancelled

GPU_BRIDGE = Path(__file__).resolve().parents[2] / "gpu-bridge"
CPU = torch.device("cpu")


def tiny(path, config=None, seed=0, max_shard_bytes=None):
    config = config or llama_config()
    save_checkpoint(path, config, random_model(config, seed=seed).state_dict(), max_shard_bytes=max_shard_bytes)
    return path


def with_config(path, **overrides):
    """A copy of a model directory's config.json with fields replaced (weights untouched)."""
    config = json.loads((path / "config.json").read_text())
    config.update(overrides)
    (path / "config.json").write_text(json.dumps(config))
    return path


# -- S5: shards must stay inside the model directory --------------------------------------------


def outside_weights(tmp_path):
    """A model directory tmp/a/model whose weights all lie in tmp/outside/x.safetensors."""
    outside = tmp_path / "outside"
    outside.mkdir()
    config = llama_config()
    write_safetensors(outside / "x.safetensors", random_model(config, seed=5).state_dict())
    model = tmp_path / "a" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(config))
    return model, outside / "x.safetensors"


def write_index(model_dir, shard):
    names = read_safetensors(model_dir.parent.parent / "outside" / "x.safetensors")[0]
    (model_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: shard for n in names}}))


def test_s5_index_shard_path_leaving_the_directory(tmp_path):
    model, _ = outside_weights(tmp_path)
    write_index(model, "../../outside/x.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_state_dict(model)
    msg = str(info.value)
    assert str(model / "model.safetensors.index.json") in msg and "'../../outside/x.safetensors'" in msg
    assert "outside the model directory" in msg


def test_s5_index_shard_absolute_path(tmp_path):
    model, target = outside_weights(tmp_path)
    write_index(model, str(target))
    with pytest.raises(CheckpointError, match="absolute path"):
        load_state_dict(model)


@pytest.mark.parametrize("name", ["model.safetensors", "model-00001-of-00001.safetensors"])
def test_s5_weights_symlink_resolving_outside(tmp_path, name):
    model, target = outside_weights(tmp_path)
    os.symlink("../../outside/x.safetensors", model / name)
    if name != "model.safetensors":
        write_index(model, name)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(model)
    msg = str(info.value)
    assert str(model / name) in msg and str(target) in msg and "outside the model directory" in msg


def test_s5_hugging_face_cache_snapshot_still_loads(tmp_path):
    """The hub's cache links snapshots/<rev>/<file> to ../../blobs/<hash>: that layout is not an escape."""
    source = tiny(tmp_path / "src")
    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / "abc123"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, name in enumerate(["config.json", "model.safetensors"]):
        shutil.copy(source / name, repo / "blobs" / f"blob{i}")
        os.symlink(f"../../blobs/blob{i}", snapshot / name)
    assert read_config(snapshot) == read_config(source)
    assert sorted(load_state_dict(snapshot)) == sorted(load_state_dict(source))


# -- N4: config.json is validated before anything is allocated ---------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("num_attention_heads", 0, "a positive integer"),
        ("num_attention_heads", "eight", "a positive integer"),
        ("max_position_embeddings", -5, "a positive integer"),
        ("vocab_size", True, "a positive integer"),
        ("hidden_size", 30, "divisible by num_attention_heads (4)"),
        ("num_key_value_heads", 3, "divide num_attention_heads (4)"),
        ("head_dim", 7, "even"),
        ("rms_norm_eps", "tiny", "a positive number"),
        ("eos_token_id", ["2"], "integer token ids"),
    ],
)
def test_n4_invalid_config_field_is_named(tmp_path, field, value, expected):
    model = with_config(tiny(tmp_path / "m"), **{field: value})
    with pytest.raises(ModelConfigError) as info:
        load_model(str(model), CPU, torch.float32)
    msg = str(info.value)
    assert msg.startswith(f"{model / 'config.json'}: {field} ") and expected in msg and repr(value) in msg


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"vocab_size": 10_000_000, "hidden_size": 1_000_000}, ["vocab_size", "hidden_size"]),
        (
            {
                "num_hidden_layers": 200_000,
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_attention_heads": 32,
                "num_key_value_heads": 32,
            },
            ["num_hidden_layers"],
        ),
    ],
)
def test_n4_model_too_big_for_memory_is_refused_before_allocating(tmp_path, overrides, fields):
    model = with_config(tiny(tmp_path / "m"), **overrides)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        load_model(str(model), CPU, torch.float32)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert msg.startswith(f"{model / 'config.json'}: ") and "memory" in msg
    assert all(field in msg for field in fields)


def test_n4_layer_count_the_weights_do_not_have_is_refused_before_allocating(tmp_path):
    """200000 tiny layers fit in memory (about 7 GB), but building them held the worker for minutes."""
    model = with_config(tiny(tmp_path / "m"), num_hidden_layers=200_000)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        load_model(str(model), CPU, torch.float32)
    assert time.monotonic() - start < 5
    assert str(info.value) == (
        f"{model / 'config.json'}: num_hidden_layers is 200000 but the weights hold 2 layers "
        "(model.layers.0 to model.layers.1)"
    )


@pytest.mark.parametrize("config", [llama_config(), qwen2_config(), llama_config(head_dim=12, num_key_value_heads=1)])
def test_n4_parameter_estimate_matches_the_model(config):
    c = ModelConfig.from_hf(config)
    assert sum(c.parameter_counts().values()) == sum(p.numel() for p in CausalLM(c).parameters())


def test_n4_memory_check_compares_with_the_device(monkeypatch):
    config = ModelConfig.from_hf(llama_config())
    params = sum(config.parameter_counts().values())
    monkeypatch.setattr(
        loading, "available_memory", lambda device: params * 4 - 1 if device.type == "cuda" else 1 << 40
    )
    with pytest.raises(
        CheckpointError, match=r"m/config\.json: this model needs .* of cuda memory in float32 but .* is available"
    ):
        check_memory(config, torch.device("cuda"), torch.float32, "m/config.json")
    check_memory(config, torch.device("cuda"), torch.bfloat16, "m/config.json")  # half the bytes: fits


# -- N5: NaN and Inf weights --------------------------------------------------------------------


def poison(path, name, values):
    tensors, metadata = read_safetensors(path)
    tensors = {k: v.clone() for k, v in tensors.items()}
    tensors[name].view(-1)[: len(values)] = torch.tensor(values)
    write_safetensors(path, tensors, metadata)


def test_n5_non_finite_weights_are_reported_with_file_and_tensor(tmp_path):
    model = tiny(tmp_path / "m")
    poison(
        model / "model.safetensors", "model.layers.1.mlp.down_proj.weight", [float("nan"), float("inf"), float("nan")]
    )
    with pytest.raises(CheckpointError) as info:
        load_model(str(model), CPU, torch.float32)
    assert str(info.value).startswith(
        f"{model / 'model.safetensors'}: tensor 'model.layers.1.mlp.down_proj.weight' has 2 NaN and 1 Inf values"
    )
    assert "allowNonFinite" in str(info.value)
    loaded = load_model(str(model), CPU, torch.float32, allow_non_finite=True)
    assert loaded.model.layers[1].mlp.down_proj.weight.isnan().sum() == 2


def test_n5_non_finite_weights_in_a_shard_name_the_shard(tmp_path):
    model = tiny(tmp_path / "m", max_shard_bytes=4000)
    index = json.loads((model / "model.safetensors.index.json").read_text())["weight_map"]
    shard = model / index["model.norm.weight"]
    poison(shard, "model.norm.weight", [float("-inf")])
    with pytest.raises(CheckpointError, match=rf"^{shard}: tensor 'model.norm.weight' has 0 NaN and 1 Inf values"):
        load_model(str(model), CPU, torch.float32)


# -- N7: unreadable weights say what they are ---------------------------------------------------


def weights_dir(tmp_path):
    model = tiny(tmp_path / "src")
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(model / "config.json", broken)
    return broken, broken / "model.safetensors"


def test_n7_symlink_loop_as_weights(tmp_path):
    model, weights = weights_dir(tmp_path)
    os.symlink("model.safetensors", weights)
    with pytest.raises(CheckpointError, match=f"^{weights}: a symlink loop"):
        load_state_dict(model)


def test_n7_dangling_symlink_as_weights(tmp_path):
    model, weights = weights_dir(tmp_path)
    os.symlink("gone.safetensors", weights)
    with pytest.raises(
        CheckpointError, match=f"^{weights}: a symlink to {model / 'gone.safetensors'}, which does not exist"
    ):
        load_state_dict(model)


def test_n7_directory_as_weights(tmp_path):
    model, weights = weights_dir(tmp_path)
    weights.mkdir()
    with pytest.raises(CheckpointError, match=f"^{weights}: a directory, not a regular file"):
        load_state_dict(model)


def test_n7_fifo_as_weights_does_not_hang(tmp_path):
    model, weights = weights_dir(tmp_path)
    os.mkfifo(weights)
    with pytest.raises(CheckpointError, match=f"^{weights}: a FIFO, not a regular file"):
        load_state_dict(model)


def test_n7_unreadable_weights(tmp_path):
    """Root reads any file, so as root a child process drops to the other user (README.md here)
    after its imports."""
    model = tiny(Path(tempfile.mkdtemp()) / "m")  # not under pytest's tmp, which is owner-only
    try:
        weights = model / "model.safetensors"
        weights.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(CheckpointError, match=f"^{weights}: cannot be read \\(permission denied\\)"):
                load_state_dict(model)
            return
        if subprocess.run(["id", "thinkcells-other"], capture_output=True).returncode != 0:
            made = subprocess.run(["useradd", "--system", "--no-create-home", "thinkcells-other"], capture_output=True)
            if made.returncode != 0:
                pytest.skip(f"no unprivileged user to read as: useradd failed: {made.stderr.decode().strip()}")
        model.parent.chmod(0o755)
        probe = (
            "import os, pwd\n"
            "from thinkcells_bridge.hf_checkpoint import load_state_dict\n"
            "user = pwd.getpwnam('thinkcells-other')\n"
            "os.setgid(user.pw_gid); os.setuid(user.pw_uid)\n"
            f"load_state_dict({str(model)!r})"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(GPU_BRIDGE)),
            timeout=120,
        )
        assert result.returncode != 0
        assert f"CheckpointError: {weights}: cannot be read (permission denied)" in result.stderr, result.stderr
    finally:
        shutil.rmtree(model.parent)


# -- C1: loading over a name another client holds ----------------------------------------------


def load_body(path, name="default", **overrides):
    body = {
        "name": name,
        "path": str(path),
        "dtype": "float32",
        "rope_scaling": None,
        "quantize": None,
        "allow_non_finite": False,
        "replace": False,
    }
    body.update(overrides)
    return body


def ctx(client):
    return RequestContext(1, threading.Event(), client)


def test_c1_loading_over_another_clients_model_is_refused(tmp_path):
    first, second = tiny(tmp_path / "first", seed=1), tiny(tmp_path / "second", seed=2)
    worker = Worker("t", CPU)
    worker.load_model(load_body(first), ctx("notebook (connection 1)"))
    with pytest.raises(OpError) as info:
        worker.load_model(load_body(second), ctx("script (connection 2)"))
    msg = str(info.value)
    assert "'default'" in msg and "notebook (connection 1)" in msg and str(first) in msg and "replace" in msg
    assert worker.get("default").path == str(first)

    worker.load_model(load_body(first), ctx("notebook (connection 1)"))  # re-running its own cell
    assert worker.load_model(load_body(second, replace=True), ctx("script (connection 2)"))["path"] == str(second)
    with pytest.raises(OpError, match=r"script \(connection 2\)"):
        worker.load_model(load_body(first), ctx("notebook (connection 1)"))


def test_c1_a_gone_clients_model_is_free_to_replace(tmp_path):
    first, second = tiny(tmp_path / "first", seed=1), tiny(tmp_path / "second", seed=2)
    worker = Worker("t", CPU)
    worker.load_model(load_body(first), ctx("kernel (connection 1)"))
    worker.client_gone("kernel (connection 1)")
    assert worker.load_model(load_body(second), ctx("kernel (connection 2)"))["path"] == str(second)


def test_c1_a_load_whose_client_left_midway_installs_nothing(tmp_path):
    """The server sets a closed connection's cancel events, then calls client_gone: a load that
    finished after that would leave the name held by a client that no longer exists."""
    worker = Worker("t", CPU)
    gone = ctx("kernel (connection 1)")
    gone.cancel_event.set()
    with pytest.raises(Cancelled):
        worker.load_model(load_body(tiny(tmp_path / "m")), gone)
    assert worker.models == {}
