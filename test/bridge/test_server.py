"""The real bridge process, driven over its Unix socket by a raw client written here."""

import json
import os
import platform
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bridge_wire import Client, Tensor, llama_config, random_model
from thinkcells_bridge.hf_checkpoint import save_checkpoint
from thinkcells_bridge.loading import load_model
from thinkcells_bridge.protocol import PROTOCOL_VERSION
from thinkcells_bridge.sampling import SampleParams, sample, sequence_logprobs

GPU_BRIDGE = Path(__file__).resolve().parents[2] / "gpu-bridge"
SESSION = "t"


class Bridge:
    def __init__(self, directory: Path, log_path: Path, idle_timeout=2.0):
        self.dir = directory
        self.json_path = directory / f"{SESSION}.json"
        self.socket_path = directory / f"{SESSION}.sock"
        self.log_path = log_path
        env = dict(os.environ, PYTHONPATH=str(GPU_BRIDGE))
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "thinkcells_bridge",
                    "--session",
                    SESSION,
                    "--dir",
                    str(directory),
                    "--idle-timeout",
                    str(idle_timeout),
                ],
                cwd=GPU_BRIDGE,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not self.json_path.exists():
            assert self.proc.poll() is None, f"bridge exited early:\n{self.log()}"
            assert time.monotonic() < deadline, f"bridge did not publish {self.json_path}:\n{self.log()}"
            time.sleep(0.02)
        self.info = json.loads(self.json_path.read_text())

    def log(self):
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout=30.0, authenticate=True):
        client = Client(self.info["socket"], timeout=timeout)
        if authenticate:
            response = client.call(
                "hello", {"token": self.info["token"], "protocol_version": PROTOCOL_VERSION, "client": "pytest"}
            )
            assert response["ok"] is True, response
        return client

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bridge still running after {timeout}s:\n{self.log()}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(
        path,
        llama_config(max_position_embeddings=8192),
        random_model(llama_config(max_position_embeddings=8192), seed=31).state_dict(),
    )
    return path


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    base = tmp_path_factory.mktemp("bridge")
    server = Bridge(base / "run", base / "bridge.log")  # --dir does not exist yet: the bridge creates it
    yield server
    server.kill()


@pytest.fixture(scope="module")
def client(bridge):
    c = bridge.connect()
    yield c
    c.close()


@pytest.fixture(scope="module")
def loaded(client, checkpoint):
    response = client.call(
        "load_model",
        {
            "name": "tiny",
            "path": str(checkpoint),
            "dtype": "auto",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
    )
    assert response["ok"] is True, response
    return response["body"]


def sample_request(model="tiny", prompts=((5, 6, 7), (9, 10, 11, 12, 13)), **overrides):
    body = {
        "model": model,
        "prompt_ids": Tensor(np.array([t for p in prompts for t in p], dtype=np.int32)),
        "prompt_lengths": Tensor(np.array([len(p) for p in prompts], dtype=np.int32)),
        "n": 2,
        "max_new_tokens": 6,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "stop_token_ids": [],
        "seed": None,
        "use_cache": True,
        "entropy": False,
    }
    body.update(overrides)
    return body


def test_files_and_modes(bridge):
    assert stat.S_IMODE(os.stat(bridge.dir).st_mode) == 0o700
    st = os.stat(bridge.socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(bridge.json_path).st_mode) == 0o600
    assert bridge.info["pid"] == bridge.proc.pid
    assert bridge.info["socket"] == str(bridge.socket_path)
    assert bridge.info["protocol_version"] == PROTOCOL_VERSION and len(bridge.info["token"]) == 48
    assert sorted(p.name for p in bridge.dir.iterdir()) == ["t.json", "t.lock", "t.sock"]
    assert stat.S_IMODE(os.stat(bridge.dir / "t.lock").st_mode) == 0o600


def test_wrong_token_is_refused_and_disconnected(bridge):
    c = bridge.connect(timeout=10, authenticate=False)
    response = c.call("hello", {"token": "0" * 48, "protocol_version": PROTOCOL_VERSION, "client": "pytest"})
    assert response["ok"] is False and response["op"] == "hello"
    assert "handshake failed" in response["error"]["message"]
    assert "PermissionError: handshake failed" in response["error"]["traceback"]
    assert c.recv() is None  # the bridge closed the connection
    c.close()


def test_request_before_hello_is_refused(bridge):
    c = bridge.connect(timeout=10, authenticate=False)
    response = c.call("ping", {})
    assert response["ok"] is False and "handshake failed" in response["error"]["message"]
    assert c.recv() is None
    c.close()


def test_protocol_version_mismatch(bridge):
    c = bridge.connect(timeout=10, authenticate=False)
    response = c.call("hello", {"token": bridge.info["token"], "protocol_version": 99, "client": "pytest"})
    assert response["ok"] is False and response["error"]["type"] == "invalid_request"
    assert f"client speaks 99, bridge {PROTOCOL_VERSION}" in response["error"]["message"]
    # Still not authenticated, but a correct hello on the same connection works.
    response = c.call(
        "hello", {"token": bridge.info["token"], "protocol_version": PROTOCOL_VERSION, "client": "pytest"}
    )
    assert response["ok"] is True
    assert response["body"]["pid"] == bridge.proc.pid and response["body"]["session"] == SESSION
    assert response["body"]["protocol_version"] == PROTOCOL_VERSION and response["body"]["device"] == "cpu"
    ping = c.call("ping", {})
    assert ping["ok"] is True and ping["body"] == {} and ping["buffers"] == []
    c.close()


def test_ping_and_status(client):
    assert client.call("ping", {})["ok"] is True
    status = client.call("status", {})
    assert status["ok"] is True
    body = status["body"]
    assert body["device"] == "cpu" and body["default_dtype"] == "float32" and body["threads"] == torch.get_num_threads()
    assert body["native_blas"].startswith("torch's BLAS") and body["torch_version"] == torch.__version__
    assert body["torch_blas"] == ("mkl" if platform.machine() == "x86_64" else body["torch_blas"])  # PyPI's x86 wheels
    assert body["memory"]["rss_bytes"] > 10_000_000 and body["memory"]["cuda_total_bytes"] is None
    assert body["uptime_s"] > 0


def test_load_model(loaded, checkpoint, client):
    assert loaded["name"] == "tiny" and loaded["path"] == str(checkpoint)
    assert (loaded["model_type"], loaded["device"], loaded["dtype"]) == ("llama", "cpu", "float32")
    assert (loaded["vocab_size"], loaded["hidden_size"], loaded["num_hidden_layers"]) == (97, 32, 2)
    assert (loaded["num_attention_heads"], loaded["num_key_value_heads"]) == (4, 2)
    assert loaded["tie_word_embeddings"] is True and loaded["bos_token_id"] == 1 and loaded["eos_token_ids"] == [2]
    in_process = load_model(str(checkpoint), torch.device("cpu"), torch.float32)
    assert loaded["parameters"] == loaded["trainable_parameters"] == sum(p.numel() for p in in_process.parameters())
    models = client.call("status", {})["body"]["models"]
    assert [m["name"] for m in models] == ["tiny"]


def test_sample_matches_in_process(loaded, checkpoint, client):
    prompts = ((5, 6, 7), (9, 10, 11, 12, 13))
    before = client.call("status", {})["body"]["prefill_tokens"]
    response = client.call("sample", sample_request(prompts=prompts, n=2, max_new_tokens=6))
    assert response["ok"] is True, response
    body = response["body"]
    # Each prompt's prefill is shared by its 2 samples: 2 prompts left-padded to 5 tokens.
    assert body["prefill_tokens"] == 2 * 5
    assert client.call("status", {})["body"]["prefill_tokens"] == before + 2 * 5
    assert body["tokens"].dtype == np.int32 and body["tokens"].shape == (4, 6)
    assert body["lengths"].dtype == np.int32 and body["lengths"].tolist() == [6] * 4
    assert body["logprobs"].dtype == np.float32 and body["stop_reasons"] == ["length"] * 4

    model = load_model(str(checkpoint), torch.device("cpu"), torch.float32)
    expected = sample(
        model,
        [torch.tensor(p) for p in prompts],
        SampleParams(n=2, max_new_tokens=6, temperature=0.0, top_p=1.0, top_k=0, stop_token_ids=(), seed=None),
    )
    assert body["tokens"].tolist() == expected.tokens.tolist()
    assert np.allclose(body["logprobs"], expected.logprobs.numpy(), atol=1e-5)
    assert body["tokens"][0].tolist() == body["tokens"][1].tolist() != body["tokens"][2].tolist()


def test_sample_with_stop_tokens_and_seed(loaded, client):
    free = client.call("sample", sample_request(n=1, temperature=1.0, seed=5, max_new_tokens=10))["body"]
    first = int(free["tokens"][0, 2])
    response = client.call(
        "sample", sample_request(n=1, temperature=1.0, seed=5, max_new_tokens=10, stop_token_ids=[first])
    )
    body = response["body"]
    stop_at = free["tokens"][0].tolist().index(first)
    assert body["lengths"][0] == stop_at + 1 and body["stop_reasons"][0] == "stop_token"
    assert body["tokens"][0, stop_at + 1 :].tolist() == [0] * (9 - stop_at)
    again = client.call("sample", sample_request(n=1, temperature=1.0, seed=5, max_new_tokens=10))["body"]
    assert again["tokens"].tolist() == free["tokens"].tolist()


def test_logprobs_op(loaded, checkpoint, client):
    seqs = [[4, 5, 6, 7], [8, 9]]
    response = client.call(
        "logprobs",
        {
            "model": "tiny",
            "token_ids": Tensor(np.array([t for s in seqs for t in s], dtype=np.int32)),
            "lengths": Tensor(np.array([len(s) for s in seqs], dtype=np.int64)),
            "temperature": 0.7,
        },
    )
    assert response["ok"] is True, response
    model = load_model(str(checkpoint), torch.device("cpu"), torch.float32)
    expected = torch.cat(sequence_logprobs(model, [torch.tensor(s) for s in seqs], temperature=0.7))
    assert not np.allclose(
        expected.numpy(), torch.cat(sequence_logprobs(model, [torch.tensor(s) for s in seqs])).numpy()
    )
    assert response["body"]["logprobs"].shape == (4,)
    assert np.allclose(response["body"]["logprobs"], expected.numpy(), atol=1e-5)


def test_echo_returns_tensors_unchanged(client):
    tensors = {
        "odd": np.array([1, -2, 3], dtype=np.int32),  # 12 bytes: the next one must be realigned
        "big": np.arange(-5, 5, dtype=np.int64).reshape(2, 5) * (1 << 40),
        "f": np.array([[0.5, -0.0, 1e-30], [np.inf, -np.inf, 3.25]], dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    response = client.call("echo", {"tensors": {k: Tensor(v) for k, v in tensors.items()}})
    assert response["ok"] is True, response
    back = response["body"]["tensors"]
    assert sorted(back) == sorted(tensors)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        assert back[name].tobytes() == array.tobytes(), name


def assert_error(response, request_id, op, kind, *words):
    assert response["id"] == request_id and response["ok"] is False, response
    assert response["op"] == op and response["error"]["type"] == kind, response
    for word in words:
        assert word in response["error"]["message"], (word, response["error"]["message"])
    assert response["error"]["traceback"].startswith("Traceback (most recent call last)")


def test_op_errors_are_reported_and_the_bridge_survives(loaded, client):
    request_id = client.send("sample", sample_request(model="nope"))
    response = client.recv()
    assert_error(response, request_id, "sample", "bad_input", "no model named 'nope'", "loaded: tiny")
    assert "OpError" in response["error"]["traceback"] and "in sample" in response["error"]["traceback"]
    assert client.call("ping", {})["ok"] is True

    request_id = client.send("sample", sample_request(prompts=((5, 200),)))
    assert_error(client.recv(), request_id, "sample", "bad_input", "token id 200", "0..96")
    request_id = client.send(
        "load_model",
        {
            "name": "x",
            "path": "/nonexistent/dir",
            "dtype": "auto",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
    )
    assert_error(client.recv(), request_id, "load_model", "bad_input", "/nonexistent/dir")
    request_id = client.send("convert_llama2c", {"bin_path": "/nonexistent.bin", "out_dir": "/tmp/never"})
    assert_error(client.recv(), request_id, "convert_llama2c", "bad_input", "/nonexistent.bin")
    assert client.call("ping", {})["ok"] is True


def test_invalid_request_is_reported(loaded, client):
    request_id = client.send("sample", sample_request(temperature=-1.0))
    assert_error(client.recv(), request_id, "sample", "invalid_request", "temperature")
    request_id = client.send("sample", sample_request(bogus=1))
    assert_error(client.recv(), request_id, "sample", "invalid_request", "'bogus'")
    assert client.call("ping", {})["ok"] is True


def test_unload_model(checkpoint, client):
    assert client.call(
        "load_model",
        {
            "name": "second",
            "path": str(checkpoint),
            "dtype": "float32",
            "rope_scaling": None,
            "quantize": None,
            "allow_non_finite": False,
            "replace": False,
        },
    )["ok"]
    assert client.call("unload_model", {"name": "second"})["body"] == {"unloaded": True}
    assert client.call("unload_model", {"name": "second"})["body"] == {"unloaded": False}
    request_id = client.send("sample", sample_request(model="second"))
    assert_error(client.recv(), request_id, "sample", "bad_input", "no model named 'second'")


def test_cancel_long_sample(loaded, bridge, client):
    assert client.call("cancel", {"request_id": 424242})["body"] == {"cancelled": False}
    long_id = client.send("sample", sample_request(n=64, max_new_tokens=5000, temperature=1.0, seed=0))
    time.sleep(0.5)
    started = time.monotonic()
    cancel_id = client.send("cancel", {"request_id": long_id})
    responses = {}
    while len(responses) < 2:
        response = client.recv()
        responses[response["id"]] = response
    elapsed = time.monotonic() - started
    assert responses[cancel_id] == {"id": cancel_id, "ok": True, "body": {"cancelled": True}, "buffers": []}
    # Cancelled while generating (not before it started), and promptly.
    assert_error(responses[long_id], long_id, "sample", "cancelled", "sample was cancelled")
    assert "before it started" not in responses[long_id]["error"]["message"]
    assert elapsed < 3.0, elapsed
    assert client.call("ping", {})["ok"] is True


def test_os_error_in_an_op_is_reported(bridge, tmp_path):
    """BUG (server.py, Connection._execute): `except (ConnectionError, OSError)` is meant for a
    broken client socket, but it also catches OSErrors raised by the op itself (here
    IsADirectoryError from opening the .bin): the worker thread returns silently, the request
    never gets an answer and every later request on the connection hangs."""
    c = bridge.connect(timeout=5)
    request_id = c.send("convert_llama2c", {"bin_path": str(tmp_path), "out_dir": str(tmp_path / "out")})
    try:
        response = c.recv()
    except TimeoutError:
        pytest.fail("no response to a convert_llama2c whose bin_path is a directory (IsADirectoryError)")
    assert response["id"] == request_id and response["ok"] is False
    assert response["error"]["type"] in ("bad_input", "internal")
    assert str(tmp_path) in response["error"]["message"]
    assert c.call("ping", {})["ok"] is True
    c.close()


def test_idle_timeout_exits_and_cleans_up(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    os.chmod(run, 0o755)
    bridge = Bridge(run, tmp_path / "bridge.log", idle_timeout=2.0)
    try:
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o700  # tightened on start
        c = bridge.connect()
        time.sleep(2.8)  # longer than the idle timeout, but a client is connected
        assert c.call("ping", {})["ok"] is True
        assert bridge.proc.poll() is None
        c.close()
        closed = time.monotonic()
        assert bridge.wait_exit(10) == 0, bridge.log()
        waited = time.monotonic() - closed
        assert 1.5 < waited < 5.0, waited
        # The lock file stays: removing it could let two bridges each lock a different file.
        assert [p.name for p in run.iterdir()] == [f"{SESSION}.lock"]
    finally:
        bridge.kill()


def test_shutdown_op_stops_the_bridge(tmp_path, checkpoint):
    bridge = Bridge(tmp_path / "run", tmp_path / "bridge.log", idle_timeout=0)
    try:
        c = bridge.connect()
        assert c.call(
            "load_model",
            {
                "name": "m",
                "path": str(checkpoint),
                "dtype": "auto",
                "rope_scaling": None,
                "quantize": None,
                "allow_non_finite": False,
                "replace": False,
            },
        )["ok"]
        other = bridge.connect()  # a second client does not keep it alive against shutdown
        started = time.monotonic()
        assert c.call("shutdown", {}) == {"id": 3, "ok": True, "body": {}, "buffers": []}
        assert bridge.wait_exit(5) == 0, bridge.log()
        assert time.monotonic() - started < 3.0
        assert not bridge.socket_path.exists() and not bridge.json_path.exists()
        c.close()
        other.close()
    finally:
        bridge.kill()


def test_second_bridge_for_a_session_exits_with_already_running(bridge, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(GPU_BRIDGE))
    second = subprocess.run(
        [sys.executable, "-m", "thinkcells_bridge", "--session", SESSION, "--dir", str(bridge.dir)],
        cwd=GPU_BRIDGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 3, second.stdout + second.stderr
    assert "already running" in second.stdout
    # The first bridge keeps its socket and still answers.
    assert bridge.socket_path.exists()
    assert bridge.connect().call("ping", {})["ok"] is True
