"""C3: staging that a killed save_state or export left is removed by the next one, told apart from
a live writer's by the pid in its name; a full disk's error names the file being written."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bridge_wire import llama_config, random_model
from thinkcells_bridge.export import write_export
from thinkcells_bridge.optim import Trainer
from thinkcells_bridge.state import read_state_meta, save_state

ROOT = Path(__file__).resolve().parents[2]


def dead_pid():
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid():
    """Another process, alive during the test: its staging must survive."""
    child = subprocess.Popen(["sleep", "600"])
    yield child.pid
    child.kill()
    child.wait()


def leave(directory, name):
    (directory / name).mkdir()
    (directory / name / "state.safetensors").write_bytes(b"partial")
    return name


def trainer():
    return Trainer(random_model(llama_config()))


def test_C3_save_state_removes_a_killed_saves_staging_and_spares_a_live_one(tmp_path, live_pid):
    target = tmp_path / "state"
    save_state(str(target), trainer(), None)
    dead = dead_pid()
    leave(tmp_path, f"state.tmp-{dead}")
    leave(tmp_path, f"state.old-{dead}")
    live = leave(tmp_path, f"state.tmp-{live_pid}")
    save_state(str(target), trainer(), None)
    assert sorted(os.listdir(tmp_path)) == ["state", live]


def test_C3_a_killed_saves_previous_state_survives_until_a_save_replaces_it(tmp_path):
    """Killed between its two renames, a save leaves the previous state only under .old-<pid>:
    loading falls back to it, so it is removed only once a new save has committed."""
    target = tmp_path / "state"
    save_state(str(target), trainer(), None)
    old = tmp_path / f"state.old-{dead_pid()}"
    os.rename(target, old)
    assert read_state_meta(str(target))[0] == old
    save_state(str(target), trainer(), None)
    assert os.listdir(tmp_path) == ["state"]


def test_C3_a_failed_save_removes_its_staging(tmp_path, monkeypatch):
    import thinkcells_bridge.state as state_mod

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(state_mod, "write_safetensors", crash)
    with pytest.raises(OSError, match="disk full"):
        save_state(str(tmp_path / "state"), trainer(), None)
    assert os.listdir(tmp_path) == []


KILLED_SAVE = """
import sys, time
import thinkcells_bridge.state as state
from bridge_wire import llama_config, random_model
from thinkcells_bridge.optim import Trainer

def write_then_stop(path, tensors, metadata=None):
    real(path, tensors, metadata)
    print("written", flush=True)
    time.sleep(600)

real, state.write_safetensors = state.write_safetensors, write_then_stop
state.save_state(sys.argv[1], Trainer(random_model(llama_config())), None)
"""


def test_C3_a_save_state_sigkilled_mid_save_leaves_staging_that_the_next_save_removes(tmp_path):
    target = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "gpu-bridge"), str(ROOT / "test" / "bridge")])}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline() == "written\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    staging = tmp_path / f"state.tmp-{child.pid}"
    assert (staging / "state.safetensors").exists()
    save_state(str(target), trainer(), None)
    assert os.listdir(tmp_path) == ["state"]


def test_C3_write_export_removes_a_killed_exports_staging_and_spares_a_live_one(tmp_path, live_pid):
    dead = dead_pid()
    leave(tmp_path, f".out.tmp-{dead}-0a1b2c3d")
    leave(tmp_path, f".out.old-{dead}-0a1b2c3d")
    live = leave(tmp_path, f".out.tmp-{live_pid}-0a1b2c3d")
    write_export(str(tmp_path / "out"), llama_config(), {"w": torch.zeros(2)}, {})
    assert sorted(os.listdir(tmp_path)) == [live, "out"]


@pytest.fixture
def full_disk(tmp_path):
    """A tmpfs (root only) with `free` pages left: fill(free) leaves that many."""
    if os.getuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")

    def fill(pages):
        stat = os.statvfs(mount)
        (mount / "filler").write_bytes(b"\0" * ((stat.f_bavail - pages) * stat.f_frsize))
        return mount

    yield fill
    subprocess.run(["umount", str(mount)], check=True)


def test_C3_save_states_enospc_names_the_file_and_leaves_no_staging(full_disk):
    # No trainable parameters: state.safetensors (the RNG state) fills the two pages left, so
    # state.json is the write that fails.
    model = random_model(llama_config()).requires_grad_(False)
    mount = full_disk(2)
    target = mount / "state"
    with pytest.raises(OSError) as caught:
        save_state(str(target), Trainer(model), None)
    assert caught.value.errno == 28
    assert caught.value.filename == str(mount / f"state.tmp-{os.getpid()}" / "state.json")
    assert os.listdir(mount) == ["filler"]
