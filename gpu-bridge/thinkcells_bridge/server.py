"""The bridge process: a Unix-socket server that outlives notebook kernels.

Files, in a directory only the owner can enter:
  <session>.sock   the socket (mode 0600)
  <session>.json   pid, socket path and the handshake token (mode 0600), written atomically
                   once the socket listens: its presence means "ready"
  <session>.log    stdout/stderr, kept for error reports
  <session>.lock   held while the bridge runs: a second bridge for the session exits at once
                   (ALREADY_RUNNING) and its client attaches to the first

Each connection first sends `hello` with the token. Requests on one connection run one after
another on a worker thread, while the connection's reader stays free to take `cancel`.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import queue
import socket
import struct
import threading
import time
import traceback

import torch

from . import __version__
from .environment import MissingPackage, exit_code
from .ops import OpError, RequestContext, Worker
from .protocol import MAX_FRAME, PROTOCOL_VERSION, ProtocolError, decode_frame, encode_frame
from .sampling import Cancelled

ALREADY_RUNNING = exit_code("already_running")  # another bridge holds this session


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def error_type(exc: BaseException) -> str:
    if isinstance(exc, Cancelled):
        return "cancelled"
    if isinstance(exc, ProtocolError):
        return "invalid_request"
    if isinstance(exc, (OpError, ValueError, OSError, MissingPackage)):
        return "bad_input"  # includes missing or unreadable files the request named, and packages a feature lacks
    return "internal"


class Connection:
    def __init__(self, server: "BridgeServer", sock: socket.socket):
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
        self.send({
            "id": request_id,
            "ok": False,
            "op": op,
            "error": {
                "type": error_type(exc),
                "message": str(exc) or type(exc).__name__,
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            },
        })

    def serve(self) -> None:
        executor = threading.Thread(target=self._execute, daemon=True)
        executor.start()
        try:
            while True:
                head = _recv_exact(self.sock, 4)
                if head is None:
                    return
                (length,) = struct.unpack("<I", head)
                # Before the handshake only a small hello is believable.
                if length > (MAX_FRAME if self.authenticated else 1 << 16):
                    return
                payload = _recv_exact(self.sock, length)
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
            self.fail(request_id, op, exc if isinstance(exc, ProtocolError) else ProtocolError(f"malformed frame: {exc}"))
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
                self.fail(request_id, op, ProtocolError(
                    f"protocol version mismatch: client speaks {body['protocol_version']}, bridge {PROTOCOL_VERSION}"))
                return
            self.authenticated = True
            self.client = f"{body['client']} (connection {self.server.next_connection()})"
            self.send({"id": request_id, "ok": True, "body": self.server.hello()})
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

class BridgeServer:
    def __init__(self, session: str, directory: str, idle_timeout_s: float, device: torch.device):
        self.session = session
        self.directory = directory
        self.socket_path = os.path.join(directory, f"{session}.sock")
        self.info_path = os.path.join(directory, f"{session}.json")
        self.idle_timeout_s = idle_timeout_s
        self.token = os.urandom(24).hex()
        self.worker = Worker(session, device)
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
        info = {"pid": os.getpid(), "socket": self.socket_path, "token": self.token,
                "protocol_version": PROTOCOL_VERSION, "started_at": time.time()}
        tmp = f"{self.info_path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, self.info_path)

    def _cleanup(self) -> None:
        for path in (self.info_path, self.socket_path):
            try:
                # Only remove files that are still ours: a newer bridge may have replaced them.
                if path == self.info_path:
                    with open(path) as f:
                        if json.load(f).get("pid") != os.getpid():
                            continue
                os.unlink(path)
            except (OSError, ValueError):
                pass

    def serve_forever(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        lock = os.open(os.path.join(self.directory, f"{self.session}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"a bridge for session {self.session!r} is already running", flush=True)
            raise SystemExit(ALREADY_RUNNING)
        if os.path.exists(self.socket_path):
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
                except socket.timeout:
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
