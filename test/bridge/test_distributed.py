"""The bridge as torchrun ranks (CPU, gloo), against one process on the same requests: training
(data parallel, and FSDP2 for a model loaded with shard), sampling, log-probs, cancellation,
checkpoints across world sizes, a rank killed or stopped mid-request, and a two-node rendezvous on
loopback.

Tolerances: losses, metrics and gradient norms within 1e-5 relative, updated weights within 1e-5
relative + 1e-6 absolute (the ranks sum the same terms in another order); greedy tokens equal."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from bridge_wire import Client, Tensor, llama_config, random_model
from thinkcells_bridge.hf_checkpoint import save_checkpoint
from thinkcells_bridge.protocol import PROTOCOL_VERSION
from thinkcells_bridge.safetensors import read_safetensors

GPU_BRIDGE = Path(__file__).resolve().parents[2] / "gpu-bridge"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def bridge_args(session, directory):
    return ["-m", "thinkcells_bridge", "--session", session, "--dir", str(directory), "--idle-timeout", "120"]


class Bridge:
    """A bridge started as `command` (one process, the --nproc launcher, or torchrun), found by its session file."""

    def __init__(self, directory: Path, session: str, commands: list[list[str]], env=None):
        self.dir, self.session = directory, session
        self.log_path = directory.parent / f"{session}.log"
        env = dict(os.environ, PYTHONPATH=str(GPU_BRIDGE), **(env or {}))
        with open(self.log_path, "ab") as log:
            self.procs = [
                subprocess.Popen(command, cwd=GPU_BRIDGE, env=env, stdout=log, stderr=subprocess.STDOUT)
                for command in commands
            ]
        json_path = directory / f"{session}.json"
        deadline = time.monotonic() + 120
        while not json_path.exists():
            assert all(p.poll() is None for p in self.procs), f"bridge exited early:\n{self.log()}"
            assert time.monotonic() < deadline, f"bridge did not start:\n{self.log()}"
            time.sleep(0.05)
        self.info = json.loads(json_path.read_text())
        self.client = self.connect()

    def log(self):
        return self.log_path.read_text(errors="replace")

    def connect(self):
        client = Client(self.info["socket"], timeout=120)
        hello = {"token": self.info["token"], "protocol_version": PROTOCOL_VERSION, "client": "pytest"}
        assert client.call("hello", hello)["ok"] is True
        return client

    def call(self, op, body):
        response = self.client.call(op, body)
        assert response["ok"] is True, f"{op}: {response.get('error')}\n{self.log()[-3000:]}"
        return response["body"]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def launch(tmp_path_factory, session, nproc, env=None):
    base = tmp_path_factory.mktemp(session)
    command = [sys.executable, *bridge_args(session, base / "run")]
    return Bridge(base / "run", session, [command + ["--nproc", str(nproc)]], env)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    config = llama_config(tie_word_embeddings=False)
    save_checkpoint(path, config, random_model(config, seed=5).state_dict())
    return path


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    bridge = launch(tmp_path_factory, "single", 1)
    yield bridge
    bridge.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    bridge = launch(tmp_path_factory, "pair", 2)
    yield bridge
    bridge.stop()


def load_body(checkpoint, name):
    return {
        "name": name,
        "path": str(checkpoint),
        "dtype": "float32",
        "rope_scaling": None,
        "quantize": None,
        "allow_non_finite": False,
        "replace": False,
    }


def load(bridge, checkpoint, name, **options):
    return bridge.call("load_model", {**load_body(checkpoint, name), **options})


def sequences(seed, rows):
    rng = np.random.default_rng(seed)
    lengths = np.array([5 + (3 * r + seed) % 6 for r in range(rows)], np.int32)
    return rng.integers(3, 97, int(lengths.sum())).astype(np.int32), lengths


def training_batch(seed, kind, rows=5, checkpointing=False):
    ids, lengths = sequences(seed, rows)
    rng = np.random.default_rng(seed + 100)
    n = ids.size
    if kind == "cross_entropy":
        # The prompt (the first 2 tokens of each sequence) unweighted.
        weights = np.concatenate([np.r_[np.zeros(2), np.ones(k - 2)] for k in lengths]).astype(np.float32)
        loss = {"kind": "cross_entropy", "weights": Tensor(weights), "num_tokens": None}
    else:
        loss = {
            "kind": "policy_gradient",
            "mask": Tensor((rng.random(n) > 0.2).astype(np.float32)),
            "old_logprobs": Tensor((-rng.random(n) * 4).astype(np.float32)),
            "advantages": Tensor(rng.standard_normal(rows).astype(np.float32)),
            "eps_low": 0.2,
            "eps_high": 0.28,
            "ratio_level": "token",
            "aggregation": "seq_mean_token_mean",
            "constant": None,
            "num_tokens": None,
            "num_sequences": float(2 * rows),  # two micro-batches of `rows` sequences make the batch
            "beta": 0.0,
            "entropy_coef": 0.0,
            "temperature": 1.0,
        }
    return {
        "token_ids": Tensor(ids),
        "lengths": Tensor(lengths),
        "example_lengths": None,
        "loss": loss,
        "loss_scale": 1.0,
        "gradient_checkpointing": checkpointing,
    }


STEP = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0}


def train(bridge, name, steps, first=0, kind="cross_entropy", checkpointing=False):
    """Steps of two micro-batches each; the losses, metrics and gradient norms."""
    record = []
    for step in range(first, first + steps):
        for micro in range(2):
            batch = training_batch(10 * step + micro, kind, checkpointing=checkpointing)
            out = bridge.call("forward_backward", {"model": name, **batch})
            record.append((out["loss"], out["metrics"], out["tokens"]))
        record.append(bridge.call("optim_step", {"model": name, **STEP})["grad_norm"])
    return record


def assert_same_record(got, expected, metrics_abs=1e-7):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if isinstance(e, tuple):
            assert g[0] == pytest.approx(e[0], rel=1e-5) and g[2] == e[2]
            assert g[1] == pytest.approx(e[1], rel=1e-5, abs=metrics_abs)
        else:
            assert g == pytest.approx(e, rel=1e-5)


def weights(bridge, name, directory):
    bridge.call(
        "export_model",
        {"model": name, "dir": str(directory), "shard_bytes": None, "dtype": "float32", "metadata": {}, "onnx": None},
    )
    return read_safetensors(str(directory / "model.safetensors"))[0]


def assert_same_weights(got, expected):
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def apply_lora(bridge, name):
    body = {"model": name, "rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": "all-linear", "seed": 3}
    return bridge.call("apply_lora", body)


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_two_ranks_train_as_one_process(single, pair, checkpoint, tmp_path, lora):
    name = f"train-{lora}"
    results = {}
    for label, bridge in (("single", single), ("pair", pair)):
        load(bridge, checkpoint, name)
        if lora:
            apply_lora(bridge, name)
        record = train(bridge, name, 2) + train(bridge, name, 1, first=2, kind="policy_gradient")
        results[label] = record, weights(bridge, name, tmp_path / label)
    assert_same_record(results["pair"][0], results["single"][0])
    assert_same_weights(results["pair"][1], results["single"][1])
    assert pair.call("status", {})["world_size"] == 2 and single.call("status", {})["world_size"] == 1


def rl_batch(seed, kind, rows):
    """A GRPO step with the KL term (its reference pass turns the adapters off), PPO with the value
    head, or DPO against the adapters-off reference: what those trainers send."""
    batch = training_batch(seed, "policy_gradient", rows=rows)
    n = batch["token_ids"].array.size
    rng = np.random.default_rng(seed + 200)
    loss = dict(batch["loss"], beta=0.05, num_sequences=None)
    if kind == "ppo":
        loss.update(
            kind="ppo",
            aggregation="token_mean",
            advantages=Tensor(rng.standard_normal(n).astype(np.float32)),
            old_values=Tensor((rng.standard_normal(n) * 0.1).astype(np.float32)),
            returns=Tensor(rng.standard_normal(n).astype(np.float32)),
            value_clip=0.2,
            value_coef=0.5,
        )
    elif kind == "dpo":
        loss = {"kind": "dpo", "mask": Tensor(np.ones(n, np.float32)), "beta": 0.1, "ref_logprobs": None}
    return dict(batch, loss=loss)


def test_value_head_and_reference_policy_equal_one_process(single, pair, checkpoint):
    """LoRA with a value head: the adapters-off reference (scored directly and inside the KL and DPO
    losses), PPO's value loss and the updated value head behave on two ranks as in one process."""
    results = {}
    for label, bridge in (("single", single), ("pair", pair)):
        name = "rl-heads"
        load(bridge, checkpoint, name)
        apply_lora(bridge, name)
        bridge.call("add_value_head", {"model": name})
        probe = {k: v for k, v in training_batch(7, "cross_entropy").items() if k in ("token_ids", "lengths")}
        record = []
        for step, kind in enumerate(("policy_gradient", "ppo", "dpo")):
            for micro in range(2):
                batch = rl_batch(20 * step + micro, kind, rows=6)
                out = bridge.call("forward_backward", {"model": name, **batch})
                record.append((out["loss"], out["metrics"], out["tokens"]))
            record.append(bridge.call("optim_step", {"model": name, **STEP})["grad_norm"])
        assert bridge.call("set_adapters", {"model": name, "enabled": False})["enabled"] is False
        reference = bridge.call("logprobs", {"model": name, **probe, "temperature": 1.0})["logprobs"]
        bridge.call("set_adapters", {"model": name, "enabled": True})
        policy = bridge.call("logprobs", {"model": name, **probe, "temperature": 1.0})["logprobs"]
        values = bridge.call("values", {"model": name, **probe})["values"]
        results[label] = record, reference, policy, values
        bridge.call("unload_model", {"name": name})
    # DPO's implicit rewards are β × a difference of sequence log-prob sums: fp32 sums in another order.
    assert_same_record(results["pair"][0], results["single"][0], metrics_abs=1e-6)
    for got, expected in zip(results["pair"][1:], results["single"][1:]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # The steps moved the policy and the value head away from the reference and from V = 0.
    assert not np.allclose(results["single"][2], results["single"][1])
    assert np.abs(results["single"][3]).max() > 1e-4


def sample_body(name, prompts, **overrides):
    body = {
        "model": name,
        "prompt_ids": Tensor(np.array([t for p in prompts for t in p], np.int32)),
        "prompt_lengths": Tensor(np.array([len(p) for p in prompts], np.int32)),
        "n": 2,
        "max_new_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "stop_token_ids": [2],
        "seed": None,
        "use_cache": True,
        "entropy": True,
    }
    return {**body, **overrides}


PROMPTS = [(5, 6, 7), (9, 10, 11, 12, 13), (20, 21), (30, 31, 32, 33), (40,)]


def long_sample(name, n):
    """Every step recomputes the whole prefix: n=16 takes ~3 s for 2 ranks on 2 cores, n=48 ~9 s."""
    return sample_body(name, PROMPTS * 8, n=n, max_new_tokens=58, stop_token_ids=[], use_cache=False)


def test_greedy_samples_and_logprobs_equal_one_process(single, pair, checkpoint):
    outs = {}
    for label, bridge in (("single", single), ("pair", pair)):
        load(bridge, checkpoint, "sampler")
        ids, lengths = sequences(7, 5)
        scored = {"model": "sampler", "token_ids": Tensor(ids), "lengths": Tensor(lengths), "temperature": 0.8}
        outs[label] = bridge.call("sample", sample_body("sampler", PROMPTS)), bridge.call("logprobs", scored)
    (sampled, scored), (expected, expected_scores) = outs["pair"], outs["single"]
    np.testing.assert_array_equal(sampled["tokens"], expected["tokens"])
    np.testing.assert_array_equal(sampled["lengths"], expected["lengths"])
    assert sampled["stop_reasons"] == expected["stop_reasons"]
    # Prompts split 3 / 2 over the ranks: each rank left-pads its own to its longest.
    assert sampled["prefill_tokens"] == 3 * 5 + 2 * 4 and expected["prefill_tokens"] == 5 * 5
    np.testing.assert_allclose(sampled["logprobs"], expected["logprobs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sampled["entropies"], expected["entropies"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scored["logprobs"], expected_scores["logprobs"], rtol=1e-5, atol=1e-6)
    # Seeded sampling at temperature 1: every row its own draws (no rank repeats another's).
    seeded = sample_body("sampler", PROMPTS, temperature=1.0, seed=4, n=4, stop_token_ids=[])
    tokens = pair.call("sample", seeded)["tokens"].tolist()
    assert len({tuple(row) for row in tokens}) == len(PROMPTS) * 4
    assert pair.call("sample", seeded)["tokens"].tolist() == tokens  # and the seed repeats them


def test_cancelling_a_sample_stops_every_rank(pair, checkpoint):
    load(pair, checkpoint, "cancelled")
    request = pair.client.send("sample", long_sample("cancelled", 48))
    time.sleep(0.5)
    started = time.monotonic()
    pair.client.send("cancel", {"request_id": request})
    responses = {r["id"]: r for r in (pair.client.recv(), pair.client.recv())}
    assert responses[request]["ok"] is False and responses[request]["error"]["type"] == "cancelled"
    assert time.monotonic() - started < 2  # rank 1 stopped too: its part alone takes ~8 s more
    assert pair.call("ping", {}) == {}


def test_states_cross_world_sizes(single, pair, checkpoint, tmp_path):
    """A state two ranks saved (torch.distributed.checkpoint) resumes in one process, and one a
    process saved (safetensors) in two ranks, each exactly as where it was saved."""
    for label, bridge in (("single", single), ("pair", pair)):
        load(bridge, checkpoint, "saved")
        apply_lora(bridge, "saved")
        train(bridge, "saved", 1)
        files = bridge.call("save_state", {"model": "saved", "dir": str(tmp_path / label)})["files"]
        assert ("state.safetensors" in files) == (label == "single") and "state.json" in files
    expected = {}
    for label, bridge in (("single", single), ("pair", pair)):
        expected[label] = train(bridge, "saved", 1, first=1), weights(bridge, "saved", tmp_path / f"{label}-after")
    for saved, resumed in (("pair", single), ("single", pair)):
        load(resumed, checkpoint, "resumed")  # no adapters yet: the state brings them
        assert resumed.call("load_state", {"model": "resumed", "dir": str(tmp_path / saved)})["step"] == 1
        record = train(resumed, "resumed", 1, first=1)
        assert_same_record(record, expected[saved][0])
        assert_same_weights(weights(resumed, "resumed", tmp_path / f"{saved}-resumed"), expected[saved][1])


def test_fsdp_sharded_full_fine_tuning_equals_one_process(single, pair, checkpoint, tmp_path):
    info = load(pair, checkpoint, "sharded", shard=True)
    assert info["sharded"] is True and info["parameters"] == info["trainable_parameters"]
    assert load(single, checkpoint, "sharded", shard=True)["sharded"] is False  # one rank: nothing to shard
    expected_samples = single.call("sample", sample_body("sharded", PROMPTS))
    np.testing.assert_array_equal(
        pair.call("sample", sample_body("sharded", PROMPTS))["tokens"], expected_samples["tokens"]
    )
    record = train(pair, "sharded", 2, checkpointing=True)  # layers recomputed in backward, as FSDP2 allows
    assert_same_record(record, train(single, "sharded", 2, checkpointing=True))
    assert_same_weights(weights(pair, "sharded", tmp_path / "pair"), weights(single, "sharded", tmp_path / "single"))
    # Sharded state (DTensors) saved by two ranks resumes whole in one process; one process's
    # state resumes sharded (each rank keeps its shard of the whole tensors).
    pair.call("save_state", {"model": "sharded", "dir": str(tmp_path / "pair-state")})
    single.call("save_state", {"model": "sharded", "dir": str(tmp_path / "single-state")})
    load(single, checkpoint, "from-shards")
    single.call("load_state", {"model": "from-shards", "dir": str(tmp_path / "pair-state")})
    load(pair, checkpoint, "into-shards", shard=True)
    pair.call("load_state", {"model": "into-shards", "dir": str(tmp_path / "single-state")})
    expected = train(single, "sharded", 1, first=2)
    assert_same_record(train(single, "from-shards", 1, first=2), expected)
    assert_same_record(train(pair, "into-shards", 1, first=2), expected)

    refused = pair.client.call("load_model", {**load_body(checkpoint, "q"), "quantize": "int8", "shard": True})
    assert refused["ok"] is False and refused["error"]["type"] == "bad_input"
    assert "shard cannot hold a int8-quantized base" in refused["error"]["message"]
    body = {"model": "sharded", "rank": 4, "alpha": 8.0, "dropout": 0.0, "targets": "all-linear", "seed": 3}
    refused = pair.client.call("apply_lora", body)
    assert refused["ok"] is False and "is sharded" in refused["error"]["message"]


def children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize(
    ("how", "within"),
    [(signal.SIGKILL, 5), (signal.SIGSTOP, 10)],
    ids=["killed", "stopped"],
)
def test_a_lost_rank_closes_the_socket_within_seconds(tmp_path_factory, checkpoint, how, within):
    """Killed: torchrun stops the others. Stopped (alive, silent): rank 0's wait for it times out
    after THINKCELLS_COLLECTIVE_TIMEOUT_S (3 s here) and rank 0 exits."""
    bridge = launch(tmp_path_factory, how.name.lower(), 2, {"THINKCELLS_COLLECTIVE_TIMEOUT_S": "3"})
    try:
        load(bridge, checkpoint, "m")
        rank0 = bridge.info["pid"]
        assert bridge.info["launcher_pid"] == bridge.procs[0].pid  # the launcher became torchrun's agent
        (rank1,) = [pid for pid in children(bridge.procs[0].pid) if pid != rank0]
        # Short enough that rank 0's own part ends well within the timeout (3 s) below.
        bridge.client.send("sample", long_sample("m", 16))
        time.sleep(0.5)
        os.kill(rank1, how)
        started = time.monotonic()
        bridge.client.sock.settimeout(60)
        assert bridge.client.recv() is None  # closed before answering: the client's "crashed"
        assert time.monotonic() - started < within
        if how == signal.SIGSTOP:
            os.kill(rank1, signal.SIGCONT)  # torchrun's SIGTERM waits for it to run (else SIGKILL in 30 s)
        assert bridge.procs[0].wait(60) != 0  # torchrun stopped the other rank and exited
        assert not any(Path(f"/proc/{pid}").exists() and "Z" not in status(pid) for pid in (rank0, rank1))
    finally:
        bridge.stop()


def status(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_rendezvous_on_loopback(tmp_path, single, checkpoint):
    """Two torchrun launches (--nnodes 2, one rank each) meet at a c10d rendezvous on 127.0.0.1:
    the rank-0 node serves the socket, and a training step equals one process's."""
    port = free_port()
    node = [*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    node += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "loopback", "--max-restarts", "0"]
    command = node + bridge_args("nodes", tmp_path / "run")
    bridge = Bridge(tmp_path / "run", "nodes", [command, command])
    try:
        assert "launcher_pid" not in bridge.info  # started by hand: rank 0 took the session's lock itself
        load(bridge, checkpoint, "m")
        load(single, checkpoint, "two-nodes")
        assert_same_record(train(bridge, "m", 1), train(single, "two-nodes", 1))
        assert bridge.call("status", {})["world_size"] == 2
        bridge.call("shutdown", {})
        assert [p.wait(60) for p in bridge.procs] == [0, 0]
    finally:
        bridge.stop()
