"""The bridge process: a Unix-socket server that outlives notebook kernels.

Files, in a directory only the owner can enter (`ensure_private_dir`), each opened without
following a symlink and only if it is the owner's (`open_private`):
  <session>.sock   the socket (mode 0600)
  <session>.json   pid, socket path and the handshake token (mode 0600), written atomically
                   once the socket listens: its presence means "ready"
  <session>.log    stdout/stderr, kept for error reports
  <session>.lock   held while the bridge runs: a second bridge for the session exits at once
                   (ALREADY_RUNNING) and its client attaches to the first

Each connection first sends `hello` with the token, within HANDSHAKE_TIMEOUT_S. Requests on one
connection run one after another on a worker thread, while the connection's reader stays free to
take `cancel`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hmac
import json
import os
import queue
import socket
import stat
import struct
import tempfile
import threading
import time
import traceback
from typing import Literal

import torch

from . import __version__
from .environment import MissingPackage, error_kind, exit_code
from .ops import OpError, RequestContext, Worker
from .protocol import MAX_FRAME, PROTOCOL_VERSION, ProtocolError, decode_frame, encode_frame
from .sampling import Cancelled

ALREADY_RUNNING = exit_code("already_running")  # another bridge holds this session
# From connecting to a successful hello. A client sends hello as soon as it connects, so this only
# has to absorb a loaded machine; without it, connections that never finish a frame stay open
# (and hold a thread) for as long as their peer likes.
HANDSHAKE_TIMEOUT_S = 5.0


class UnsafePath(PermissionError):
    """A runtime directory or file that another user made or could have changed."""


def unsafe_reason(st: os.stat_result, kind: Literal["directory", "regular file"]) -> str | None:
    """Why an lstat/fstat result is not a private `kind` of this user: a directory others can
    write to may hold their files; a file with another name elsewhere (symlink or hard link)
    would make the bridge write there."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not (stat.S_ISDIR if kind == "directory" else stat.S_ISREG)(st.st_mode):
        return f"it is not a {kind}"
    if st.st_uid != os.geteuid():
        return f"it belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})"
    if kind == "directory" and st.st_mode & 0o022:
        return f"others can write to it (mode {stat.S_IMODE(st.st_mode):04o})"
    if kind == "regular file" and st.st_nlink != 1:
        return f"it has {st.st_nlink} hard links"
    return None


def ensure_private_dir(path: str) -> None:
    """Makes the runtime directory 0700 in one step, or accepts an existing one only if it is this
    user's and nobody else can write to it, as OpenSSH treats ~/.ssh: another user who made it
    first could answer this bridge's clients or swap its files. Only readable by others (nothing
    can have been put in it): tightened to 0700."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    reason = unsafe_reason(st, "directory")
    if reason:
        raise UnsafePath(
            f"refusing the bridge directory {path}: {reason}; remove it, or point "
            "THINKCELLS_BRIDGE_DIR at a directory of your own"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def open_private(path: str, flags: int) -> int:
    """os.open for a file of the runtime directory: never through a symlink, and only a regular
    file of this user with no other names (created 0600)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"refusing {path}: it is a symbolic link") from None
        raise
    reason = unsafe_reason(os.fstat(fd), "regular file")
    if reason:
        os.close(fd)
        raise UnsafePath(f"refusing {path}: {reason}")
    return fd


def _recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes | None:
    """n bytes, or None at end of stream; TimeoutError once `deadline` (monotonic) has passed."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            # The whole read, not each recv: a peer sending a byte now and then must not last.
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def error_type(exc: BaseException) -> str:
    """The failed response's `error.type`: one of the kinds protocol.ts declares."""
    if isinstance(exc, Cancelled):
        return error_kind("cancelled")
    if isinstance(exc, ProtocolError):
        return error_kind("invalid_request")
    if isinstance(exc, (OpError, ValueError, OSError, MissingPackage)):
        return error_kind(
            "bad_input"
        )  # includes missing or unreadable files the request named, and packages a feature lacks
    return error_kind("internal")


class Connection:
    def __init__(self, server: BridgeServer, sock: socket.socket):
        self.server = server
        self.sock = sock
        self.send_lock = threading.Lock()
        self.pending: queue.Queue = queue.Queue()
        self.running: dict[int, threading.Event] = {}
        self.authenticated = False
        self.client = ""  # set by hello: the client's name and this connection's number

    def send(self, envelope: dict) -> None:
        frame = encode_frame(envelope)
        with self.send_lock:
            self.sock.sendall(frame)

    def fail(self, request_id: int, op: str, exc: BaseException) -> None:
        self.send(
            {
                "id": request_id,
                "ok": False,
                "op": op,
                "error": {
                    "type": error_type(exc),
                    "message": str(exc) or type(exc).__name__,
                    "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                },
            }
        )

    def serve(self) -> None:
        handshake_deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        try:
            while True:
                deadline = None if self.authenticated else handshake_deadline
                head = _recv_exact(self.sock, 4, deadline)
                if head is None:
                    return
                (length,) = struct.unpack("<I", head)
                # Before the handshake only a small hello is believable.
                if length > (MAX_FRAME if self.authenticated else 1 << 16):
                    return
                payload = _recv_exact(self.sock, length, deadline)
                if payload is None:
                    return
                self._dispatch(payload)
        except (ConnectionError, OSError):
            return
        finally:
            for event in list(self.running.values()):
                event.set()  # nobody is waiting for these results any more
            self.pending.put(None)
            self.sock.close()
            if self.authenticated:
                self.server.worker.client_gone(self.client)
            self.server.disconnected()

    def _dispatch(self, payload: bytes) -> None:
        try:
            envelope = decode_frame(payload)
        except Exception as exc:  # malformed frame: report it against whatever id and op we can read
            request_id, op = -1, "?"
            try:
                head = json.loads(payload[4 : 4 + struct.unpack_from("<I", payload)[0]])
                request_id, op = head.get("id", -1), str(head.get("op", "?"))
            except Exception:
                pass
            self.fail(
                request_id, op, exc if isinstance(exc, ProtocolError) else ProtocolError(f"malformed frame: {exc}")
            )
            if not self.authenticated:
                self.sock.shutdown(socket.SHUT_RDWR)
            return
        op, request_id, body = envelope["op"], envelope["id"], envelope["body"]
        if not self.authenticated:
            if op != "hello" or not hmac.compare_digest(body["token"], self.server.token):
                self.fail(request_id, op, PermissionError("handshake failed: wrong or missing token"))
                self.sock.shutdown(socket.SHUT_RDWR)
                return
            if body["protocol_version"] != PROTOCOL_VERSION:
                self.fail(
                    request_id,
                    op,
                    ProtocolError(
                        f"protocol version mismatch: client speaks {body['protocol_version']}, bridge {PROTOCOL_VERSION}"
                    ),
                )
                return
            self.authenticated = True
            self.sock.settimeout(None)  # the handshake deadline is met; requests take their time
            self.client = f"{body['client']} (connection {self.server.next_connection()})"
            # Only now: a connection that never authenticates costs no executor thread.
            threading.Thread(target=self._execute, daemon=True).start()
            self.send({"id": request_id, "ok": True, "body": self.server.hello()})
            return
        if op == "hello":
            self.fail(request_id, op, ProtocolError("hello: this connection has already completed the handshake"))
            return
        if op == "cancel":
            event = self.running.get(body["request_id"])
            if event is not None:
                event.set()
            self.send({"id": request_id, "ok": True, "body": {"cancelled": event is not None}})
            return
        event = threading.Event()
        self.running[request_id] = event
        self.pending.put((request_id, op, body, event))

    def _execute(self) -> None:
        while True:
            item = self.pending.get()
            if item is None:
                return
            request_id, op, body, event = item
            self.server.busy(+1)
            reply: dict | None = None
            failure: BaseException | None = None
            try:
                if event.is_set():
                    raise Cancelled(f"{op} was cancelled before it started")
                if op == "shutdown":
                    self.server.stop()
                    reply = {}
                else:
                    reply = getattr(self.server.worker, op)(body, RequestContext(request_id, event, self.client))
            except BaseException as exc:  # every failure reaches the client, with its traceback
                failure = exc
            finally:
                self.running.pop(request_id, None)
                self.server.busy(-1)
            try:
                if failure is None:
                    self.send({"id": request_id, "ok": True, "body": reply})
                else:
                    self.fail(request_id, op, failure)
            except OSError:
                return  # the client is gone; nobody is left to answer


def hold_session_lock(directory: str, session: str) -> int:
    """Takes the session's lock, held while the returned descriptor stays open; another bridge
    holding it exits this process with ALREADY_RUNNING."""
    ensure_private_dir(directory)
    lock = open_private(os.path.join(directory, f"{session}.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"a bridge for session {session!r} is already running", flush=True)
        raise SystemExit(ALREADY_RUNNING) from None
    return lock


class BridgeServer:
    def __init__(
        self,
        session: str,
        directory: str,
        idle_timeout_s: float,
        device: torch.device,
        worker=None,
        launcher_pid: int | None = None,
    ):
        """worker: what runs the ops (default: a Worker in this process); launcher_pid: the
        process that took the session's lock for this one and outlives it (torchrun's agent,
        distributed.py): published, as the process a client started."""
        self.session = session
        self.directory = directory
        self.socket_path = os.path.join(directory, f"{session}.sock")
        self.info_path = os.path.join(directory, f"{session}.json")
        self.idle_timeout_s = idle_timeout_s
        self.token = os.urandom(24).hex()
        self.worker = Worker(session, device) if worker is None else worker
        self.launcher_pid = launcher_pid
        self.lock = threading.Lock()
        self.connections = 0
        self.connection_count = 0  # authenticated connections so far: numbers clients apart
        self.active = 0
        self.last_activity = time.monotonic()
        self.stopping = threading.Event()

    def hello(self) -> dict:
        return {
            "protocol_version": PROTOCOL_VERSION,
            "bridge_version": __version__,
            "session": self.session,
            "pid": os.getpid(),
            "device": str(self.worker.device),
            "torch_version": torch.__version__,
        }

    def busy(self, delta: int) -> None:
        with self.lock:
            self.active += delta
            self.last_activity = time.monotonic()

    def next_connection(self) -> int:
        with self.lock:
            self.connection_count += 1
            return self.connection_count

    def disconnected(self) -> None:
        with self.lock:
            self.connections -= 1
            self.last_activity = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()

    def _publish(self) -> None:
        info = {
            "pid": os.getpid(),
            "socket": self.socket_path,
            "token": self.token,
            "protocol_version": PROTOCOL_VERSION,
            "started_at": time.time(),
        }
        if self.launcher_pid is not None:
            info["launcher_pid"] = self.launcher_pid
        # A fresh name, created 0600 and never through a symlink (O_EXCL | O_NOFOLLOW): the
        # token must not end up in a file planted in advance.
        fd, tmp = tempfile.mkstemp(prefix=f"{self.session}.json.tmp-", dir=self.directory)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, self.info_path)

    def _cleanup(self) -> None:
        for path in (self.info_path, self.socket_path):
            try:
                # Only remove files that are still ours: a newer bridge may have replaced them.
                if path == self.info_path:
                    with os.fdopen(open_private(path, os.O_RDONLY)) as f:
                        if json.load(f).get("pid") != os.getpid():
                            continue
                os.unlink(path)
            except (OSError, ValueError):
                pass

    def serve_forever(self) -> None:
        if self.launcher_pid is None:
            hold_session_lock(self.directory, self.session)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # left by a bridge that died: we hold the lock now
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is created 0600: owner only
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        listener.listen(16)
        listener.settimeout(0.5)
        self._publish()
        try:
            while not self.stopping.is_set():
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    if self._idle_expired():
                        break
                    continue
                with self.lock:
                    self.connections += 1
                    self.last_activity = time.monotonic()
                threading.Thread(target=Connection(self, sock).serve, daemon=True).start()
        finally:
            listener.close()
            self._cleanup()

    def _idle_expired(self) -> bool:
        # Idle means nobody connected and nothing running: a notebook that sits open between
        # cells keeps its connection, and its model.
        with self.lock:
            idle = self.connections == 0 and self.active == 0
            return idle and self.idle_timeout_s > 0 and time.monotonic() - self.last_activity > self.idle_timeout_s
