"""Security and fault cases against the worker process (README.md here): its runtime directory,
the files it writes there, and connections that never finish the handshake."""

import json
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from test_server import GPU_BRIDGE, SESSION, Bridge
from thinkcells_bridge.protocol import PROTOCOL_VERSION
from thinkcells_bridge.server import HANDSHAKE_TIMEOUT_S, BridgeServer

OTHER_USER = "thinkcells-other"


@pytest.fixture(scope="module")
def other_uid():
    """The uid of a second, unprivileged user, made if missing (only root can)."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root to create and act as a second user ({OTHER_USER})")
    try:
        return pwd.getpwnam(OTHER_USER).pw_uid
    except KeyError:
        # Another test run may create it at the same moment: only the lookup after decides.
        subprocess.run(["useradd", "--system", "--no-create-home", OTHER_USER], capture_output=True)
        return pwd.getpwnam(OTHER_USER).pw_uid


def as_other(*command):
    subprocess.run(["runuser", "-u", OTHER_USER, "--", *command], check=True)


@pytest.fixture
def shared_tmp():
    """A directory like /tmp: everyone may create entries, only their owner may remove them.
    Made in /tmp itself, as pytest's own temporary directories are closed to other users."""
    shared = Path(tempfile.mkdtemp(prefix="thinkcells-corpus-", dir="/tmp"))
    os.chmod(shared, 0o1777)
    yield shared
    shutil.rmtree(shared)


def run_worker(directory, idle_timeout=1):
    """The worker as the client starts it; before the fixes a refused start ran until idle."""
    return subprocess.run(
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
        env=dict(os.environ, PYTHONPATH=str(GPU_BRIDGE)),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus-bridge")
    server = Bridge(base / "run", base / "bridge.log", idle_timeout=60)
    yield server
    server.kill()


# -- S1: the runtime directory ------------------------------------------------------------------


def test_S1_worker_refuses_a_directory_another_user_made(shared_tmp, other_uid):
    planted = shared_tmp / f"thinkcells-{os.geteuid()}"
    as_other("mkdir", "-m", "0700", str(planted))
    result = run_worker(planted)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{planted}: it belongs to uid {other_uid}, not to this user (uid {os.geteuid()})" in result.stderr
    assert list(planted.iterdir()) == []
    assert stat.S_IMODE(os.stat(planted).st_mode) == 0o700  # not "fixed" with chmod either


def test_S1_worker_refuses_a_directory_others_can_write(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    result = run_worker(loose)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{loose}: others can write to it (mode 0777)" in result.stderr
    assert list(loose.iterdir()) == []


def test_S1_worker_refuses_a_symlinked_directory(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    result = run_worker(tmp_path / "link")
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{tmp_path / 'link'}: it is a symbolic link" in result.stderr
    assert list(real.iterdir()) == []


# -- S2: the files in it ------------------------------------------------------------------------


def test_S2_session_file_is_not_written_through_a_planted_temp_symlink(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("root's secret")
    os.chmod(victim, 0o600)
    server = BridgeServer(SESSION, str(run), 0, torch.device("cpu"))
    # The name the worker used to write the session file under before renaming it.
    os.symlink(victim, f"{server.info_path}.tmp-{os.getpid()}")
    server._publish()
    assert victim.read_text() == "root's secret"
    assert json.loads(Path(server.info_path).read_text())["token"] == server.token
    assert stat.S_IMODE(os.stat(server.info_path).st_mode) == 0o600


def test_S2_worker_refuses_a_planted_lock_symlink(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    target = tmp_path / "made-by-the-worker"
    (run / f"{SESSION}.lock").symlink_to(target)
    result = run_worker(run)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{run / f'{SESSION}.lock'}: it is a symbolic link" in result.stderr
    assert not target.exists()


def test_S2_worker_refuses_a_lock_file_of_another_user(tmp_path, other_uid):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    lock = run / f"{SESSION}.lock"
    lock.touch()
    os.chown(lock, other_uid, -1)
    result = run_worker(run)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{lock}: it belongs to uid {other_uid}" in result.stderr


def test_S2_worker_refuses_a_hard_linked_lock_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.touch()
    os.link(elsewhere, run / f"{SESSION}.lock")
    result = run_worker(run)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{run / f'{SESSION}.lock'}: it has 2 hard links" in result.stderr


# -- S4: relative directories -------------------------------------------------------------------


def test_S4_worker_refuses_a_relative_directory():
    stray = GPU_BRIDGE / "relative-run-dir"  # where the worker, in its cwd, used to make it
    try:
        result = run_worker(stray.name)
        assert result.returncode != 0, result.stdout + result.stderr
        assert f"argument --dir: expected an absolute path, got '{stray.name}'" in result.stderr
        assert not stray.exists()
    finally:
        shutil.rmtree(stray, ignore_errors=True)


# -- N6: the handshake ---------------------------------------------------------------------------


def stalled_connection(bridge):
    """Connected, and half-way through a frame it will never finish."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(bridge.info["socket"])
    sock.sendall(struct.pack("<I", 100) + b"x" * 10)
    return sock


def closed_by_peer(sock, within):
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_N6_stalled_unauthenticated_connections_are_dropped(bridge):
    stalled = [stalled_connection(bridge) for _ in range(50)]
    started = time.monotonic()
    try:
        assert all(closed_by_peer(sock, HANDSHAKE_TIMEOUT_S + 3 - (time.monotonic() - started)) for sock in stalled)
    finally:
        for sock in stalled:
            sock.close()
    assert bridge.connect(timeout=10).call("ping", {})["ok"] is True


def test_N6_handshake_timeout_is_a_deadline_not_an_idle_timer(bridge):
    # A byte now and then must not keep an unauthenticated connection open.
    sock = stalled_connection(bridge)
    started = time.monotonic()
    try:
        while time.monotonic() - started < HANDSHAKE_TIMEOUT_S + 3:
            if closed_by_peer(sock, 0.5):
                break
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
        assert time.monotonic() - started < HANDSHAKE_TIMEOUT_S + 2
    finally:
        sock.close()


def test_N6_authenticated_connections_have_no_handshake_timeout(bridge):
    client = bridge.connect(timeout=10)
    time.sleep(HANDSHAKE_TIMEOUT_S + 1)
    assert client.call("ping", {})["ok"] is True
    client.close()


def test_N6_second_hello_is_an_invalid_request(bridge):
    client = bridge.connect(timeout=10)
    response = client.call(
        "hello", {"token": bridge.info["token"], "protocol_version": PROTOCOL_VERSION, "client": "again"}
    )
    assert response["ok"] is False and response["op"] == "hello"
    assert response["error"]["type"] == "invalid_request"
    assert "already" in response["error"]["message"]
    assert client.call("ping", {})["ok"] is True  # the connection stays usable
    client.close()
