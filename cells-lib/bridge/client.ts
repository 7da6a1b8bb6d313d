/**
 * The TypeScript end of the bridge: finds or starts the Python worker for a session, attaches
 * with the token handshake, and sends typed requests.
 *
 * A bridge outlives the notebook kernel that started it: a restarted kernel calls
 * `BridgeClient.connect({ session })` (or the cells' `bridge()`) again and finds its models
 * still loaded.
 */
import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  type Stats,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { processAlive } from "../util/atomic.ts";
import { formatIssues, issuesFrom, parseOptions } from "../util/options.ts";
import { venvProgram } from "../util/project-python.ts";
import { BridgeError } from "./errors.ts";
import { dehydrate, encodeFrame, type Hydrated, hydrate, splitFrame } from "./frames.ts";
import { EXIT_CODES, type OpName, ops, PROTOCOL_VERSION, ResponseEnvelope, SessionFile } from "./protocol.ts";

export const bridgePackageDir = fileURLToPath(new URL("../../gpu-bridge/", import.meta.url));

export const BridgeOptions = z
  .object({
    /** Session name: clients with the same name share one bridge and its models. */
    session: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '.', '_' or '-' (at most 64)")
      .default("default"),
    /** Python interpreter with torch; default: $THINKCELLS_PYTHON, else the project's .venv. */
    python: z.string().optional(),
    /** Where sockets, tokens and logs live (see `bridgeDir`); relative: to the current directory. */
    dir: z.string().optional(),
    /** Seconds with no client connected before the bridge exits (0: never). */
    idleTimeoutS: z.number().nonnegative().default(900),
    /** "auto" (CUDA when present), "cpu", "cuda" or "cuda:N". Applies when a bridge is started. */
    device: z
      .string()
      .regex(/^(auto|cpu|cuda(:\d+)?)$/, "auto, cpu, cuda or cuda:N")
      .default("auto"),
    /** torch CPU threads in a newly started bridge (0: the bridge's default). */
    threads: z.number().int().nonnegative().default(0),
    /** Ranks a newly started bridge runs as, under torchrun on this machine (data parallel; see
     * loadModel's `shard`); default: $THINKCELLS_NPROC, else 1 (one process, no torchrun). */
    nproc: z.number().int().positive().optional(),
    /** How long to wait for a new bridge to come up. */
    startTimeoutMs: z.number().int().positive().default(60_000),
    /** Start a bridge when none runs for the session; false: connect fails with a BridgeError of
     * kind "not_running" instead (to stop or inspect a bridge without starting one). */
    start: z.boolean().default(true),
  })
  .strict();
export type BridgeOptions = z.input<typeof BridgeOptions>;

export type OpRequest<Op extends OpName> = Hydrated<z.input<(typeof ops)[Op]["request"]>>;
export type OpResponse<Op extends OpName> = Hydrated<z.output<(typeof ops)[Op]["response"]>>;

interface Pending {
  op: string;
  resolve: (body: unknown) => void;
  reject: (err: Error) => void;
}

/** The runtime directory, absolute: the dir option, else $THINKCELLS_BRIDGE_DIR, else
 * $XDG_RUNTIME_DIR/thinkcells (the spec ignores a relative one), else $TMPDIR/thinkcells-<uid>.
 * Resolved here, once: the worker runs in gpu-bridge/ and takes only an absolute --dir. */
export function bridgeDir(dir?: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen =
    dir ||
    env.THINKCELLS_BRIDGE_DIR ||
    (env.XDG_RUNTIME_DIR && path.isAbsolute(env.XDG_RUNTIME_DIR)
      ? path.join(env.XDG_RUNTIME_DIR, "thinkcells")
      : path.join(os.tmpdir(), `thinkcells-${euid()}`));
  return path.resolve(chosen);
}

const euid = () => process.geteuid!(); // POSIX, as the bridge's Unix socket is

/** Why `st` (from lstat or fstat) is not a private directory or regular file of this user: a
 * directory others can write to may hold their files (a socket answering as the bridge, a session
 * file naming it); a file with another name (symlink, hard link) would be written or shown there. */
function unsafeReason(st: Stats, kind: "directory" | "regular file"): string | undefined {
  if (st.isSymbolicLink()) return "it is a symbolic link";
  if (!(kind === "directory" ? st.isDirectory() : st.isFile())) return `it is not a ${kind}`;
  if (st.uid !== euid()) return `it belongs to uid ${st.uid}, not to this user (uid ${euid()})`;
  if (kind === "directory" && st.mode & 0o022)
    return `others can write to it (mode ${(st.mode & 0o7777).toString(8).padStart(4, "0")})`;
  if (kind === "regular file" && st.nlink !== 1) return `it has ${st.nlink} hard links`;
  return undefined;
}

const refusal = (what: string) => new BridgeError("start_failed", "connect", `refusing ${what}`);

/** Makes the runtime directory 0700 in one step, or accepts an existing one only if it is this
 * user's and nobody else can write to it, as OpenSSH treats ~/.ssh: in a shared /tmp, another
 * user could make it first and answer this client's requests. One only readable by others
 * (nothing can have been put in it) is tightened to 0700. The worker checks it again. */
function ensurePrivateDir(dir: string): void {
  mkdirSync(path.dirname(dir), { recursive: true });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const st = lstatSync(dir);
  const reason = unsafeReason(st, "directory");
  if (reason)
    throw refusal(
      `the bridge directory ${dir}: ${reason}; remove it, or point THINKCELLS_BRIDGE_DIR at a directory of your own`,
    );
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/** openSync for a file of the runtime directory: never through a symlink, and only a regular file
 * of this user with no other names (created 0600). */
function openPrivate(file: string, flags: number): number {
  let fd: number;
  try {
    fd = openSync(file, flags | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ELOOP") throw refusal(`${file}: it is a symbolic link`);
    throw err;
  }
  const reason = unsafeReason(fstatSync(fd), "regular file");
  if (reason) {
    closeSync(fd);
    throw refusal(`${file}: ${reason}`);
  }
  return fd;
}

function readPrivate(file: string): string {
  const fd = openPrivate(file, constants.O_RDONLY);
  try {
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

/** The interpreter the bridge runs on: the python option, else $THINKCELLS_PYTHON, else the
 * project's environment (.venv), else python3 on PATH. The bridge checks at start that it has
 * what it needs, and names each missing package otherwise. */
export function findPython(explicit?: string): string {
  return explicit ?? process.env.THINKCELLS_PYTHON ?? venvProgram("python", "python3");
}

/** The nproc option, else $THINKCELLS_NPROC, else 1. */
export function bridgeNproc(explicit?: number, env: NodeJS.ProcessEnv = process.env): number {
  if (explicit !== undefined) return explicit;
  const value = env.THINKCELLS_NPROC;
  if (value === undefined || value === "") return 1;
  if (!/^[1-9][0-9]*$/.test(value))
    throw new BridgeError("start_failed", "connect", `THINKCELLS_NPROC: expected a positive integer, got "${value}"`);
  return Number(value);
}

/** The session file's bridge, if its process lives; a file that is not private is refused. */
function readSession(file: string): SessionFile | undefined {
  let text: string;
  try {
    text = readPrivate(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    // A file that is not what a bridge writes (hand-edited, another program's) names no bridge.
    const info = SessionFile.safeParse(JSON.parse(text));
    return info.success && processAlive(info.data.pid) ? info.data : undefined;
  } catch {
    return undefined;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readPrivate(file).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

function openSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socketPath);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class BridgeClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private frameLength: number | undefined;
  private closedReason: string | undefined;
  hello!: OpResponse<"hello">;

  private constructor(
    private readonly socket: net.Socket,
    readonly session: string,
    readonly logFile: string,
    private readonly infoFile: string,
  ) {
    socket.on("data", (data: Buffer) => this.onData(data));
    socket.on("close", () => this.onClose("the bridge connection closed"));
    socket.on("error", (err) => this.onClose(`the bridge connection failed: ${err.message}`));
  }

  /** Attaches to the session's bridge, starting one if none is running. */
  static async connect(options: BridgeOptions = {}): Promise<BridgeClient> {
    const opts = parseOptions(BridgeOptions, options, "connect");
    const dir = bridgeDir(opts.dir);
    ensurePrivateDir(dir);
    const infoFile = path.join(dir, `${opts.session}.json`);
    const logFile = path.join(dir, `${opts.session}.log`);
    const deadline = Date.now() + opts.startTimeoutMs;
    let info = readSession(infoFile);
    if (info && info.protocol_version !== PROTOCOL_VERSION) {
      throw new BridgeError(
        "handshake",
        "connect",
        `the bridge running for session "${opts.session}" (pid ${info.pid}) speaks protocol ${info.protocol_version}, ` +
          `this library ${PROTOCOL_VERSION}: stop it (kill ${info.pid}) or use another session`,
      );
    }
    let ours = false;
    for (;;) {
      if (info) {
        const attached = await BridgeClient.attach(info, opts.session, logFile, infoFile);
        if (attached instanceof BridgeClient) return attached;
        if (ours)
          throw new BridgeError(
            "start_failed",
            "connect",
            `cannot reach the bridge at ${info.socket}: ${attached.unreachable}`,
          );
      }
      if (!opts.start)
        throw new BridgeError("not_running", "connect", `no bridge is running for session "${opts.session}" in ${dir}`);
      // None runs, or the one named is dead or dying: a session file outlives a killed bridge
      // (or a zombie not yet reaped), and one killed a moment ago can still take a connection
      // and then reset it. Start a new bridge; should the dying one still hold the session's
      // lock, the new one exits ALREADY_RUNNING and names it, and we go round again.
      ({ info, ours } = await BridgeClient.start(opts, dir, infoFile, logFile, deadline));
    }
  }

  /** A client that has said hello to the bridge `info` names, or why nobody answered there. */
  private static async attach(
    info: SessionFile,
    session: string,
    logFile: string,
    infoFile: string,
  ): Promise<BridgeClient | { unreachable: string }> {
    let socket: net.Socket;
    try {
      socket = await openSocket(info.socket);
    } catch (err) {
      return { unreachable: (err as Error).message };
    }
    const client = new BridgeClient(socket, session, logFile, infoFile);
    try {
      client.hello = await client.call("hello", {
        token: info.token,
        protocol_version: PROTOCOL_VERSION,
        client: `thinkcells pid ${process.pid}`,
      });
    } catch (err) {
      client.close();
      if (err instanceof BridgeError && err.kind === "crashed") return { unreachable: err.message };
      if (err instanceof BridgeError) throw new BridgeError("handshake", "connect", err.message, err.remoteTraceback);
      throw err;
    }
    return client;
  }

  /** Starts a bridge for the session; `ours` is false when another one already held it (one a
   * client started at the same moment, or one still dying). */
  private static async start(
    opts: z.output<typeof BridgeOptions>,
    dir: string,
    infoFile: string,
    logFile: string,
    deadline: number,
  ): Promise<{ info: SessionFile | undefined; ours: boolean }> {
    const python = findPython(opts.python);
    const nproc = bridgeNproc(opts.nproc);
    const log = openPrivate(logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT);
    const logStart = fstatSync(log).size;
    const args = [
      "-m",
      "thinkcells_bridge",
      "--session",
      opts.session,
      "--dir",
      dir,
      "--idle-timeout",
      String(opts.idleTimeoutS),
      "--device",
      opts.device,
      "--threads",
      String(opts.threads),
      "--nproc",
      String(nproc),
    ];
    const child = spawn(python, args, {
      cwd: bridgePackageDir,
      env: {
        ...process.env,
        PYTHONPATH: [bridgePackageDir, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
      },
      // Its own process group and no pipes to us: the bridge must outlive this kernel.
      detached: true,
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    let exited: number | null | undefined;
    let spawnError: Error | undefined;
    child.once("exit", (code) => (exited = code));
    child.once("error", (err) => (spawnError = err));
    child.unref();
    while (Date.now() < deadline) {
      const info = readSession(infoFile);
      // Several ranks: child is torchrun's agent (launcher_pid), rank 0 serves the socket (pid).
      if (info && (info.pid === child.pid || info.launcher_pid === child.pid)) return { info, ours: true };
      // Another bridge holds the session's lock: the one it names, if live; else (the holder was
      // dying) the caller tries again.
      if (exited === EXIT_CODES.already_running) return { info, ours: false };
      if (spawnError) {
        const from = opts.python
          ? "the python option"
          : process.env.THINKCELLS_PYTHON
            ? "THINKCELLS_PYTHON"
            : "the default; run `npm run setup` to make .venv";
        throw new BridgeError("start_failed", "connect", `cannot run ${python} (${from}): ${spawnError.message}`);
      }
      if (exited === EXIT_CODES.unfit_environment) {
        throw new BridgeError("start_failed", "connect", readPrivate(logFile).slice(logStart).trim());
      }
      if (exited !== undefined) {
        throw new BridgeError(
          "start_failed",
          "connect",
          `the bridge exited with code ${exited} while starting (${python}). Its log ${logFile}:\n${tail(logFile)}`,
        );
      }
      await sleep(50);
    }
    child.kill();
    throw new BridgeError(
      "start_failed",
      "connect",
      `the bridge did not start within ${opts.startTimeoutMs} ms. Its log ${logFile}:\n${tail(logFile)}`,
    );
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Sends one request; tensors in `body` travel as binary. An aborted `signal` cancels it. */
  call<Op extends OpName>(
    op: Op,
    body: OpRequest<Op>,
    options: { signal?: AbortSignal } = {},
  ): Promise<OpResponse<Op>> {
    if (this.closedReason !== undefined) {
      return Promise.reject(
        new BridgeError("crashed", op, `${this.closedReason}; connect again to start a new bridge${this.logHint()}`),
      );
    }
    const wire = dehydrate(body);
    const parsed = ops[op].request.safeParse(wire.body);
    if (!parsed.success) {
      const problems = formatIssues(issuesFrom(parsed.error, wire.body), "field");
      return Promise.reject(new BridgeError("invalid_request", op, `request: ${problems}`));
    }
    const id = this.nextId++;
    const result = new Promise<OpResponse<Op>>((resolve, reject) => {
      this.pending.set(id, { op, resolve: resolve as (b: unknown) => void, reject });
    });
    this.socket.write(encodeFrame({ id, op, body: parsed.data, buffers: wire.buffers }, wire.blob));
    if (options.signal) {
      const cancel = () => {
        if (this.pending.has(id) && !this.closed) {
          const cancelId = this.nextId++;
          this.pending.set(cancelId, { op: "cancel", resolve: () => {}, reject: () => {} });
          this.socket.write(
            encodeFrame({ id: cancelId, op: "cancel", body: { request_id: id }, buffers: [] }, Buffer.alloc(0)),
          );
        }
      };
      if (options.signal.aborted) cancel();
      else options.signal.addEventListener("abort", cancel, { once: true });
    }
    return result;
  }

  /** Asks the bridge to exit (its models are freed), and waits until it has: the next
   * connect for this session then starts a new one instead of reaching a closing socket. */
  async shutdown(): Promise<void> {
    await this.call("shutdown", {});
    this.close();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && readSession(this.infoFile)?.pid === this.hello.pid) await sleep(25);
  }

  /** Closes this connection; the bridge and its models stay for the next client. */
  close(): void {
    this.closedReason ??= "this client closed its connection";
    this.socket.destroy();
  }

  private logHint(): string {
    const last = tail(this.logFile, 15);
    return last ? `. Bridge log ${this.logFile} ends with:\n${last}` : "";
  }

  private onData(data: Buffer): void {
    this.chunks.push(data);
    this.buffered += data.length;
    for (;;) {
      if (this.frameLength === undefined) {
        if (this.buffered < 4) return;
        const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : Buffer.concat(this.chunks);
        this.frameLength = 4 + head.readUInt32LE(0);
      }
      // Join the chunks once per frame, when it is complete: large responses arrive in many.
      if (this.buffered < this.frameLength) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      const payload = all.subarray(4, this.frameLength);
      const rest = all.subarray(this.frameLength);
      this.chunks = rest.length ? [rest] : [];
      this.buffered = rest.length;
      this.frameLength = undefined;
      this.onFrame(payload);
    }
  }

  private onFrame(payload: Buffer): void {
    const { envelope, blob } = splitFrame(payload);
    const parsed = ResponseEnvelope.safeParse(envelope);
    const id = (envelope as { id?: number }).id ?? -1;
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    if (!parsed.success) {
      const problems = formatIssues(issuesFrom(parsed.error, envelope), "field");
      pending.reject(new BridgeError("internal", pending.op, `malformed response: ${problems}`));
      return;
    }
    const message = parsed.data;
    if (!message.ok) {
      pending.reject(new BridgeError(message.error.type, pending.op, message.error.message, message.error.traceback));
      return;
    }
    const schema = ops[pending.op as OpName]?.response;
    const body = schema ? schema.safeParse(message.body) : { success: true as const, data: message.body };
    if (!body.success) {
      const problems = formatIssues(issuesFrom(body.error, message.body), "field");
      pending.reject(new BridgeError("internal", pending.op, `response does not match the protocol: ${problems}`));
      return;
    }
    try {
      pending.resolve(hydrate(body.data, message.buffers, blob));
    } catch (err) {
      pending.reject(new BridgeError("internal", pending.op, (err as Error).message));
    }
  }

  private onClose(reason: string): void {
    this.closedReason ??= reason;
    const hint = this.logHint();
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      pending.reject(new BridgeError("crashed", pending.op, `${this.closedReason} before answering${hint}`));
    }
  }
}
