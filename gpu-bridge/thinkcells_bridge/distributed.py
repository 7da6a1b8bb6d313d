"""The bridge as torchrun ranks: data-parallel training (every rank holds the model, gradients are
summed) or FSDP2 sharding (a model loaded with `shard`), sampling and log-probs split across the
ranks, and training state through torch.distributed.checkpoint.

Launch. `python -m thinkcells_bridge --nproc N` (what a client starts for `bridge({ nproc: N })`)
takes the session's lock and becomes torchrun (exec: the same process, which keeps the lock for
the bridge's life), which starts N ranks of this module on this machine. On several machines
torchrun is started by hand on each (README) and rank 0 takes the lock itself. Backend: gloo on
the CPU, NCCL on CUDA with rank r on cuda:LOCAL_RANK.

Requests. Rank 0 serves the socket as one process does (server.py, with a Coordinator as its
worker). Each request that touches models goes to every rank (op, body with its tensors, the
client's name) over a gloo group, every rank runs the op (DistributedWorker), and each sends its
outcome, a result or an error, to rank 0, which combines them and answers. Requests run one at a
time, in the same order on every rank: collectives inside ops always match. Rank 0 publishes a
cancellation in torchrun's key-value store, where the other ranks' sampling loops see it.

Failure. Collectives time out after THINKCELLS_COLLECTIVE_TIMEOUT_S (default 1800 s); waiting
for the next request never does. A rank that dies makes torchrun's agent stop the others
(--max-restarts 0) and a collective that fails makes its rank exit: rank 0's socket closes, and
the client reports its "crashed" error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import sys
import threading
import time
import traceback
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from .environment import protocol_schema
from .loading import pick_device
from .model import CausalLM
from .ops import LoadedModel, OpError, RequestContext, Worker
from .optim import Trainer
from .protocol import ProtocolError
from .sampling import Cancelled
from .server import BridgeServer, error_type, hold_session_lock
from .state import DCP_VERSION, read_state_meta, stage, state_tensors, write_meta
from .training import BatchError, per_token, whole_batch_normalizers

# Between requests the other ranks wait for rank 0 as long as it lives (torchrun stops them when
# it exits): the idle timeout is rank 0's.
IDLE_WAIT = timedelta(days=365)
# Rank 0 answers these alone: they read no model, or write files from inputs every rank would share.
RANK0_OPS = frozenset({"ping", "echo", "status", "convert_llama2c"})
REQUEST_OPS = frozenset(protocol_schema()["requests"])
# Per-token arrays of a loss, aligned with token_ids (training.py).
PER_TOKEN = ("weights", "mask", "old_logprobs", "old_values", "returns")
# Metrics that add up over ranks: each rank's loss is over the whole batch's normalizers.
SUMMED = frozenset({"loss", "policy_loss", "value_loss", "tokens"})
GRADIENT_BUCKET_BYTES = 256 * 2**20


def main(args) -> None:
    if "TORCHELASTIC_RUN_ID" in os.environ:
        serve_rank(args)
    else:
        launch(args)


def launch(args) -> None:
    """Becomes torchrun on this machine, holding the session's lock (ALREADY_RUNNING as one process)."""
    lock = hold_session_lock(args.dir, args.session)
    os.set_inheritable(lock, True)  # kept through exec; torchrun's ranks do not inherit it
    os.environ["THINKCELLS_LAUNCHER_PID"] = str(os.getpid())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    command += ["--nproc-per-node", str(args.nproc), "--max-restarts", "0", "-m", "thinkcells_bridge"]
    # The rank's options, without --nproc: torchrun would take it for an abbreviation of its own.
    command += ["--session", args.session, "--dir", args.dir, "--idle-timeout", str(args.idle_timeout)]
    command += ["--device", args.device, "--threads", str(args.threads)]
    sys.stdout.flush()
    os.execv(sys.executable, command)


@dataclasses.dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    requests: dist.ProcessGroup  # gloo, no practical timeout: the other ranks wait here between requests
    objects: dist.ProcessGroup  # gloo: outcomes and other Python objects
    cancels: dist.Store  # rank 0's cancelled requests, by sequence number (CancelFlag)

    def send(self, message) -> None:
        dist.broadcast_object_list([message], src=0, group=self.requests)

    def receive(self):
        box = [None]
        dist.broadcast_object_list(box, src=0, group=self.requests)
        return box[0]

    def share(self, value):
        """Rank 0's value, on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.objects)
        return box[0]

    def gather(self, value) -> list | None:
        """Every rank's value, in rank order, on rank 0 (None elsewhere)."""
        out = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(value, out, dst=0, group=self.objects)
        return out

    def all_gather(self, value) -> list:
        out = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.objects)
        return out


def collective_timeout() -> timedelta:
    value = os.environ.get("THINKCELLS_COLLECTIVE_TIMEOUT_S", "1800")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise SystemExit(f"THINKCELLS_COLLECTIVE_TIMEOUT_S: expected a positive number of seconds, got {value!r}")
    return timedelta(seconds=seconds)


def init_ranks(requested_device: str) -> tuple[Ranks, torch.device]:
    timeout = collective_timeout()
    device = pick_device(requested_device)
    if device.type == "cuda":
        if device.index is not None:
            raise SystemExit(f"--device: each rank takes cuda:LOCAL_RANK; give cuda or auto, not {requested_device}")
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None)
    requests = dist.new_group(backend="gloo", timeout=IDLE_WAIT)
    objects = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    rank = dist.get_rank()
    if rank:
        # Unseeded sampling draws from the global stream: each rank its own.
        torch.manual_seed(torch.initial_seed() + rank)
    # torchrun's key-value store (its agent's, or rank 0's): read mid-op without a collective.
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    cancels = dist.PrefixStore(f"thinkcells-cancel-{os.environ.get('TORCHELASTIC_RUN_ID', '')}/", store)
    return Ranks(rank, dist.get_world_size(), requests, objects, cancels), device


def serve_rank(args) -> None:
    ranks, device = init_ranks(args.device)
    worker = DistributedWorker(args.session, device, ranks)
    if ranks.rank:
        follow(worker)
    else:
        launcher = int(os.environ.get("THINKCELLS_LAUNCHER_PID", "0"))
        coordinator = Coordinator(worker)
        try:
            BridgeServer(
                args.session,
                args.dir,
                args.idle_timeout,
                device,
                worker=coordinator,
                # Only the launcher that is our torchrun holds the lock for us.
                launcher_pid=launcher if launcher == os.getppid() else None,
            ).serve_forever()
        finally:
            coordinator.stop()
    # Every rank's work is done and torchrun only reads the exit status. Exit now, without the
    # interpreter's finalization: destroying torch.distributed's C++ objects (process groups,
    # stores) at exit sometimes aborts ("terminate called without an active exception", rank 0
    # of a two-node run), and a rank that dies of SIGABRT fails the whole launch.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def follow(worker: DistributedWorker) -> None:
    """Ranks other than 0: run each request rank 0 sends, until it sends None (it is stopping)."""
    while (message := worker.ranks.receive()) is not None:
        op, body, client, request_id, sequence = message
        worker.execute(op, body, RequestContext(request_id, CancelFlag(worker.ranks.cancels, sequence), client))


class CancelFlag:
    """A request's cancellation on a rank other than 0, as its RequestContext reads it: set once
    rank 0 has published it (Coordinator.run), looked up at most every CHECK_S (a sampling step
    asks every token)."""

    CHECK_S = 0.05

    def __init__(self, store: dist.Store, sequence: int):
        self.store, self.key = store, str(sequence)
        self.set_, self.next_check = False, 0.0

    def is_set(self) -> bool:
        if not self.set_ and time.monotonic() >= self.next_check:
            self.next_check = time.monotonic() + self.CHECK_S
            self.set_ = self.store.check([self.key])
        return self.set_


@contextlib.contextmanager
def publishing_cancel(store: dist.Store, sequence: int, event: threading.Event):
    """Rank 0: while the block runs, a cancellation of its request is published for the other
    ranks (CancelFlag), even while rank 0 itself waits for them."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if event.wait(CancelFlag.CHECK_S):
                store.set(str(sequence), "1")
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        if event.is_set():
            store.delete_key(str(sequence))  # every rank has answered: nobody reads it any more


def fatal(message: str) -> None:
    """The ranks no longer agree on where they are: exit, so that torchrun stops the others and
    rank 0's socket closes (the client's "crashed")."""
    print(f"thinkcells bridge rank {dist.get_rank()}: {message}", file=sys.stderr, flush=True)
    os._exit(1)


class Coordinator:
    """Rank 0's worker, as server.py sees it: each op that touches models goes to every rank."""

    def __init__(self, worker: DistributedWorker):
        self.worker = worker
        self.lock = threading.Lock()  # one request at a time, in one order on every rank
        self.stopped = False  # the other ranks have been told to exit: nobody would run a request
        self.sequence = 0  # requests sent so far: a request's key for its cancellation

    @property
    def device(self) -> torch.device:
        return self.worker.device

    def __getattr__(self, op: str):
        if op in RANK0_OPS:
            return getattr(self.worker, op)
        if op not in REQUEST_OPS:
            raise AttributeError(op)
        return lambda body, ctx: self.run(op, body, ctx)

    def client_gone(self, client: str) -> None:
        with contextlib.suppress(StoppedError):  # the models go with the ranks
            self.run("forget_client", client, RequestContext(-1, threading.Event(), client))

    def run(self, op: str, body, ctx: RequestContext):
        with self.lock:
            if self.stopped:
                raise StoppedError(f"{op}: the bridge is stopping")
            self.sequence += 1
            try:
                self.worker.ranks.send((op, body, ctx.client, ctx.request_id, self.sequence))
            except Exception as exc:
                fatal(f"cannot send {op} to the other ranks: {exc}")
            with publishing_cancel(self.worker.ranks.cancels, self.sequence, ctx.cancel_event):
                return self.worker.execute(op, body, ctx)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            with contextlib.suppress(Exception):  # ranks already gone need no telling
                self.worker.ranks.send(None)


class StoppedError(RuntimeError):
    pass


@dataclasses.dataclass
class Failure:
    """A rank's error, as rank 0 reports it."""

    kind: str  # server.error_type's
    message: str
    traceback: str
    broken: bool  # a collective failed: the ranks may no longer agree

    def exception(self, rank: int) -> BaseException:
        cls = {"bad_input": OpError, "cancelled": Cancelled, "invalid_request": ProtocolError}.get(
            self.kind, RuntimeError
        )
        exc = cls(f"rank {rank}: {self.message}")
        exc.__cause__ = RankTraceback(self.traceback)
        return exc


class RankTraceback(Exception):
    """Another rank's traceback, chained to the error rank 0 raises for it."""


def share(n: int, rank: int, world_size: int) -> range:
    """Rank `rank`'s contiguous part of n items, the first n % world_size ranks one item more."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def token_offsets(lengths: torch.Tensor) -> list[int]:
    return [0, *itertools.accumulate(lengths.tolist())]


def batch_rows(body: dict, rows: range) -> dict:
    """A forward/forward_backward body with only the sequences `rows` (and their tokens, per-token
    arrays, per-sequence arrays and packed examples)."""
    lengths = body["lengths"]
    offsets = token_offsets(lengths)
    lo, hi = offsets[rows.start], offsets[rows.stop]
    loss = dict(body["loss"])
    for key in PER_TOKEN:
        if key in loss:
            loss[key] = loss[key][lo:hi]
    if "advantages" in loss:
        per_sequence = loss["advantages"].numel() == lengths.numel()
        loss["advantages"] = loss["advantages"][rows.start : rows.stop] if per_sequence else loss["advantages"][lo:hi]
    if loss.get("ref_logprobs") is not None:
        loss["ref_logprobs"] = loss["ref_logprobs"][rows.start : rows.stop]
    examples = body["example_lengths"]
    if examples is not None:
        # Packed examples tile the rows: the row boundaries are example boundaries.
        ends = token_offsets(examples)
        examples = examples[ends.index(lo) : ends.index(hi)]
    part = dict(body, token_ids=body["token_ids"][lo:hi], lengths=lengths[rows.start : rows.stop], loss=loss)
    part["example_lengths"] = examples
    return part


def check_batch_arrays(body: dict) -> None:
    """The whole batch's arrays have a value per token or per sequence: else a part could pass
    its checks where the whole would not, or fail on some ranks only."""
    lengths, loss = body["lengths"], body["loss"]
    for key in PER_TOKEN:
        if key in loss:
            per_token(loss[key], lengths, f"loss.{key}", "cpu")
    if "advantages" in loss and loss["advantages"].numel() != lengths.numel():
        per_token(loss["advantages"], lengths, "loss.advantages", "cpu")
    ref = loss.get("ref_logprobs")
    if ref is not None and ref.numel() != lengths.numel():
        raise BatchError(
            f"dpo: ref_logprobs has {ref.numel()} values for {lengths.numel()} sequences (one per sequence)"
        )


@dataclasses.dataclass(frozen=True)
class BatchPart:
    body: dict  # this rank's sequences, with the whole batch's normalizers
    counts: dict[str, float] | None  # what its metrics are means over; None: a stand-in that counts for nothing


def batch_part(model, body: dict, rank: int, world_size: int) -> BatchPart:
    """Rank `rank`'s part of a loss batch. The whole batch's normalizers make the parts' losses
    and gradients add up to the whole batch's (DPO's mean over pairs: each part scaled by its
    share of the pairs). A rank left without sequences runs the batch's first ones at weight 0:
    every rank runs the same collectives (a sharded model's) and joins the training cycle."""
    normalizers = whole_batch_normalizers(model, body)
    check_batch_arrays(body)
    n = body["lengths"].numel()
    unit = 2 if body["loss"]["kind"] == "dpo" else 1  # DPO's (chosen, rejected) pairs stay together
    if n % unit:
        raise BatchError("dpo: sequences come in (chosen, rejected) pairs: an even number is needed")
    mine = share(n // unit, rank, world_size)
    rows = range(mine.start * unit, mine.stop * unit) if mine else range(unit)
    part = batch_rows(body, rows)
    own = whole_batch_normalizers(model, dict(part, loss={**part["loss"], **dict.fromkeys(normalizers)}))
    part["loss"].update(normalizers)
    weight = (len(rows) / n if unit == 2 else 1.0) if mine else 0.0
    if "loss_scale" in part:
        part["loss_scale"] = body["loss_scale"] * weight
    counts = {**own, "pairs": len(rows) // 2} if mine else None
    return BatchPart(part, counts)


def merge_loss_results(body: dict, parts: list[tuple[dict, dict | None]]) -> dict:
    """The ranks' (result, counts) as the whole batch's result: losses summed (DPO's: weighted by
    pairs), means weighted by what each rank's is over. PPO's explained_variance is the
    token-weighted mean of the ranks' (each over its own returns)."""
    kind = body["loss"]["kind"]
    advantages = body["loss"].get("advantages")
    per_sequence = advantages is not None and advantages.numel() == body["lengths"].numel()
    counted = [(result, counts) for result, counts in parts if counts is not None]

    def weight(name: str, counts: dict) -> float:
        if kind == "dpo":
            return counts["pairs"]
        if name == "advantage_mean" and per_sequence:
            return counts["num_sequences"]
        return counts["num_tokens"]

    metrics = {}
    for name in counted[0][0]["metrics"]:
        values = [(result["metrics"][name], weight(name, counts)) for result, counts in counted]
        if name in SUMMED and kind != "dpo":
            metrics[name] = sum(v for v, _ in values)
        else:
            total = sum(w for _, w in values)
            metrics[name] = sum(v * w for v, w in values) / total if total else 0.0
    return {"loss": metrics["loss"], "metrics": metrics, "tokens": sum(result["tokens"] for result, _ in counted)}


def concat_parts(parts: list[dict | None], keys: tuple[str, ...]) -> dict:
    """The ranks' results (None: a rank without items) as one, each key's tensors concatenated in rank order."""
    present = [p for p in parts if p is not None]
    return {k: None if present[0][k] is None else torch.cat([p[k] for p in present]) for k in keys}


class DistributedWorker(Worker):
    """A rank's worker: Worker's ops on this rank's part of each request, and how rank 0 combines
    the ranks' outcomes (`merge_<op>`)."""

    def __init__(self, session: str, device: torch.device, ranks: Ranks):
        super().__init__(session, device)
        self.ranks = ranks
        self.world_size = ranks.world_size
        self.mesh = None  # FSDP2's device mesh, made with the first sharded model
        # Rank 0, while it writes a sharded model's files: its whole weights, by model name.
        self.whole: dict[str, LoadedModel] = {}

    def execute(self, op: str, body, ctx: RequestContext):
        """Runs the op on this rank and gathers every rank's outcome on rank 0, which returns
        the combined result or raises the first error (its own if it has one)."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # the device is per thread
        local: BaseException | None = None
        try:
            outcome = (getattr(self, op)(body, ctx), None)
        except BaseException as exc:
            local = exc
            broken = isinstance(exc, dist.DistError)
            outcome = (None, Failure(error_type(exc), str(exc) or type(exc).__name__, traceback.format_exc(), broken))
        try:
            outcomes = self.ranks.gather(outcome)
        except Exception as exc:
            fatal(f"{op}: the ranks could not exchange outcomes: {exc}")
        if self.ranks.rank:
            if outcome[1] is not None and outcome[1].broken:
                fatal(f"{op}: {outcome[1].message}")
            return None
        failures = [(rank, failure) for rank, (_, failure) in enumerate(outcomes) if failure is not None]
        if any(failure.broken for _, failure in failures):
            fatal(f"{op}: " + "; ".join(f"rank {rank}: {failure.message}" for rank, failure in failures))
        if local is not None:
            raise local
        if failures:
            raise failures[0][1].exception(failures[0][0])
        merge = getattr(self, f"merge_{op}", None)
        results = [result for result, _ in outcomes]
        return merge(body, results) if merge else results[0]

    def forget_client(self, client: str, ctx):
        self.client_gone(client)

    def _not_cancelled(self, ctx: RequestContext, op: str) -> RequestContext:
        """For an op that changes the model or the training cycle: rank 0's cancellation, decided
        once for every rank, and a context that no cancellation reaches after that (a part done on
        some ranks only would leave the ranks' models or gradients apart)."""
        if self.ranks.share(ctx.cancelled() if self.ranks.rank == 0 else None):
            raise Cancelled(f"{op} was cancelled before it started")
        return RequestContext(ctx.request_id, threading.Event(), ctx.client)

    # -- sharding ------------------------------------------------------------------------------

    def load_model(self, body, ctx):
        shard = body.get("shard", False) and self.world_size > 1
        if shard and body["quantize"] is not None:
            raise OpError(
                f"load_model: shard cannot hold a {body['quantize']}-quantized base (FSDP2 shards float weights); "
                "load it without shard: LoRA on a quantized base trains data-parallel"
            )
        info = super().load_model(body, self._not_cancelled(ctx, "load_model"))
        if not shard:
            return info
        loaded = self.get(body["name"])
        try:
            self._shard(loaded)
        except BaseException:
            self.unload_model({"name": body["name"]}, ctx)
            raise
        return self.info(loaded)

    def _shard(self, loaded: LoadedModel) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        model = loaded.model
        if model.backend != "native":
            raise OpError(f"load_model: shard is for thinkcells' own model families, not the {model.backend} backend")
        if self.mesh is None:
            self.mesh = init_device_mesh(self.device.type, (self.world_size,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=self.mesh)
        fully_shard(model, mesh=self.mesh)
        for module in (model, *model.model.layers):
            # Summed, not averaged: each rank's loss is already over the whole batch's normalizers
            # (a plain sum: gloo has no pre-multiplied one).
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
        # The model's own entry points, not only forward(), gather the root's parameters.
        for method in ("hidden_states", "logits", "values"):
            register_fsdp_forward_method(model, method)
        loaded.sharded = True
        loaded.trainer = Trainer(model)

    @contextlib.contextmanager
    def full_weights(self, loaded: LoadedModel):
        """A sharded model's parameters gathered whole on every rank for the block (each rank then
        samples or exports alone, with no collectives); an unsharded model as it is."""
        if not loaded.sharded:
            yield
            return
        layers = list(loaded.model.model.layers)
        for layer in layers:
            layer.set_reshard_after_forward(False, recurse=False)  # else each layer's forward would gather it again
        for module in (loaded.model, *layers):
            module.unshard()
        try:
            yield
        finally:
            for module in (loaded.model, *layers):
                module.reshard()
            for layer in layers:
                layer.set_reshard_after_forward(True, recurse=False)

    def _refuse_if_sharded(self, body, op: str) -> None:
        loaded = self.get(body["model"])
        if loaded.sharded:
            raise OpError(
                f"{op}: model {loaded.name!r} is sharded (load_model shard) for full fine-tuning; load it without shard"
            )

    def apply_lora(self, body, ctx):
        self._refuse_if_sharded(body, "apply_lora")
        return super().apply_lora(body, ctx)

    def load_adapter(self, body, ctx):
        self._refuse_if_sharded(body, "load_adapter")
        return super().load_adapter(body, ctx)

    def add_value_head(self, body, ctx):
        self._refuse_if_sharded(body, "add_value_head")
        return super().add_value_head(body, ctx)

    # -- sampling and scoring: each rank its share of the sequences ------------------------------

    def _sequences_part(self, body, ids: str, lengths: str) -> dict | None:
        self._split(body[ids], body[lengths], ids)  # the whole request's ids and lengths agree
        mine = share(body[lengths].numel(), self.ranks.rank, self.world_size)
        if not mine and self.ranks.rank:
            return None
        offsets = token_offsets(body[lengths])
        return dict(
            body,
            **{
                ids: body[ids][offsets[mine.start] : offsets[mine.stop]],
                lengths: body[lengths][mine.start : mine.stop],
            },
        )

    def sample(self, body, ctx):
        loaded = self.get(body["model"])
        with self.full_weights(loaded):
            part = self._sequences_part(body, "prompt_ids", "prompt_lengths")
            if part is None:
                return None
            if body["seed"] is not None and self.ranks.rank:
                # Seeded draws of their own: the same seed on every rank would repeat rank 0's.
                part["seed"] = (body["seed"] + self.ranks.rank * 0x9E3779B97F4A7C15) % 2**63
            return super().sample(part, ctx)

    def merge_sample(self, body, parts):
        present = [p for p in parts if p is not None]
        merged = concat_parts(parts, ("tokens", "lengths", "logprobs", "entropies"))
        others = sum(p["prefill_tokens"] for p in present[1:])  # rank 0 counted its own
        with self.counters_lock:
            self.prefill_tokens += others
        return {
            **merged,
            "stop_reasons": [reason for p in present for reason in p["stop_reasons"]],
            "prefill_tokens": present[0]["prefill_tokens"] + others,
        }

    def logprobs(self, body, ctx):
        loaded = self.get(body["model"])
        with self.full_weights(loaded):
            part = self._sequences_part(body, "token_ids", "lengths")
            return None if part is None else super().logprobs(part, ctx)

    def merge_logprobs(self, body, parts):
        return concat_parts(parts, ("logprobs",))

    def values(self, body, ctx):
        loaded = self.get(body["model"])
        with self.full_weights(loaded):
            part = self._sequences_part(body, "token_ids", "lengths")
            return None if part is None else super().values(part, ctx)

    def merge_values(self, body, parts):
        return concat_parts(parts, ("values",))

    # -- training: each rank its share of the batch, gradients summed at optim_step ---------------

    def forward(self, body, ctx):
        loaded = self.get(body["model"])
        part = batch_part(loaded.model, body, self.ranks.rank, self.world_size)
        return super().forward(part.body, ctx), part.counts

    def forward_backward(self, body, ctx):
        ctx = self._not_cancelled(ctx, "forward_backward")
        loaded = self.get(body["model"])
        part = batch_part(loaded.model, body, self.ranks.rank, self.world_size)
        return super().forward_backward(part.body, ctx), part.counts

    def merge_forward(self, body, parts):
        return merge_loss_results(body, parts)

    merge_forward_backward = merge_forward

    def optim_step(self, body, ctx):
        loaded = self.get(body["model"])
        with loaded.lock:
            self._check_cycle(loaded, ctx)
            self._reduce_gradients(loaded.trainer)
        return super().optim_step(body, ctx)

    def _reduce_gradients(self, trainer: Trainer) -> None:
        """Sums the ranks' gradients (a sharded model's own FSDP2 summed in backward), and their
        non-finite losses: every rank then takes the same step, or skips it."""
        params = [p for _, p in trainer.params() if not isinstance(p, DTensor)]
        if params:
            anywhere = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=self.device)
            dist.all_reduce(anywhere, op=dist.ReduceOp.MAX)
            grads = []
            for p, has in zip(params, anywhere.tolist()):
                if has:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    grads.append(p.grad)
            all_reduce_sum(grads)
        trainer.nonfinite[:] = [reason for reasons in self.ranks.all_gather(trainer.nonfinite) for reason in reasons]

    # -- checkpoints and files -------------------------------------------------------------------

    def save_state(self, body, ctx):
        """A torch.distributed.checkpoint directory: every rank writes its own tensors (a
        sharded model's shards; replicated ones once), rank 0 state.json and the rename."""
        import torch.distributed.checkpoint as dcp

        loaded = self.get(body["model"])
        with loaded.lock:
            tensors = state_tensors(loaded.trainer)
            if self.ranks.rank:
                tmp = self.ranks.share(None)
                if tmp is None:
                    raise OpError("save_state: rank 0 could not make the state's directory")
                dcp.save(tensors, checkpoint_id=tmp)
                return None
            shared = False

            def write(path) -> None:
                nonlocal shared
                self.ranks.share(str(path))
                shared = True
                dcp.save(tensors, checkpoint_id=str(path))
                write_meta(path, loaded.trainer, loaded.lora, loaded.model.value_head is not None, DCP_VERSION)

            try:
                files = stage(body["dir"], write)
            except BaseException:
                if not shared:
                    self.ranks.share(None)  # the other ranks are waiting for the directory
                raise
        return {"files": files, "step": loaded.trainer.step}

    def load_state(self, body, ctx):
        loaded = self.get(body["model"])
        if loaded.sharded and read_state_meta(body["dir"])[1]["lora"] is not None:
            raise OpError(f"load_state: the state has LoRA adapters, and model {loaded.name!r} is sharded (no LoRA)")
        return super().load_state(body, ctx)

    def get(self, name: str) -> LoadedModel:
        return self.whole.get(name) or super().get(name)

    def _rank0_writes(self, op: str, name: str, body, ctx):
        """Rank 0 writes the files; a sharded model's weights are gathered whole on its CPU first
        (its state_dict is the ranks' shards), and the op reads that copy."""
        loaded = self.get(name)
        if loaded.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # the whole on rank 0 only
            weights = get_model_state_dict(loaded.model, options=options)
            if self.ranks.rank == 0:
                with torch.device("meta"):
                    model = CausalLM(loaded.model.config)
                model.load_state_dict(weights, assign=True)
                self.whole[name] = dataclasses.replace(loaded, model=model.eval(), sharded=False)
        try:
            return getattr(super(), op)(body, ctx) if self.ranks.rank == 0 else None
        finally:
            self.whole.pop(name, None)

    def save_model(self, body, ctx):
        return self._rank0_writes("save_model", body["name"], body, ctx)

    def export_model(self, body, ctx):
        return self._rank0_writes("export_model", body["model"], body, ctx)

    def export_onnx(self, body, ctx):
        return self._rank0_writes("export_onnx", body["model"], body, ctx)

    def save_adapter(self, body, ctx):
        return self._rank0_writes("save_adapter", body["model"], body, ctx)


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sums each tensor over the ranks in place, through flat buckets of one dtype (one
    collective per bucket, not per tensor)."""
    bucket: list[torch.Tensor] = []
    for t in sorted(tensors, key=lambda t: str(t.dtype)) + [None]:
        if bucket and (
            t is None or t.dtype != bucket[0].dtype or _nbytes(bucket) + _nbytes([t]) > GRADIENT_BUCKET_BYTES
        ):
            flat = torch.cat([b.reshape(-1) for b in bucket])
            dist.all_reduce(flat)
            for b, piece in zip(bucket, flat.split([b.numel() for b in bucket])):
                b.copy_(piece.view_as(b))
            bucket = []
        if t is not None:
            bucket.append(t)


def _nbytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
