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
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, chmodSync, statSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { BridgeError } from "./errors.ts";
import { dehydrate, encodeFrame, hydrate, splitFrame, type Hydrated } from "./frames.ts";
import { EXIT_CODES, ops, PROTOCOL_VERSION, ResponseEnvelope, type OpName } from "./protocol.ts";
import { parseOptions } from "../util/options.ts";
import { venvProgram } from "../util/project-python.ts";

export const bridgePackageDir = fileURLToPath(new URL("../../gpu-bridge/", import.meta.url));

export const BridgeOptions = z
  .object({
    /** Session name: clients with the same name share one bridge and its models. */
    session: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "letters, digits, '.', '_' or '-' (at most 64)").default("default"),
    /** Python interpreter with torch; default: $THINKCELLS_PYTHON, else the project's .venv. */
    python: z.string().optional(),
    /** Where sockets, tokens and logs live; default: $THINKCELLS_BRIDGE_DIR or a per-user temp dir. */
    dir: z.string().optional(),
    /** Seconds with no client connected before the bridge exits (0: never). */
    idleTimeoutS: z.number().nonnegative().default(900),
    /** "auto" (CUDA when present), "cpu", "cuda" or "cuda:N". Applies when a bridge is started. */
    device: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, "auto, cpu, cuda or cuda:N").default("auto"),
    /** torch CPU threads in a newly started bridge (0: the bridge's default). */
    threads: z.number().int().nonnegative().default(0),
    /** How long to wait for a new bridge to come up. */
    startTimeoutMs: z.number().int().positive().default(60_000),
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

interface SessionInfo {
  pid: number;
  socket: string;
  token: string;
  protocol_version: number;
}

export function bridgeDir(dir?: string): string {
  if (dir) return dir;
  if (process.env.THINKCELLS_BRIDGE_DIR) return process.env.THINKCELLS_BRIDGE_DIR;
  const uid = typeof process.getuid === "function" ? process.getuid() : "user";
  return path.join(os.tmpdir(), `thinkcells-${uid}`);
}

/** The interpreter the bridge runs on: the python option, else $THINKCELLS_PYTHON, else the
 * project's environment (.venv), else python3 on PATH. The bridge checks at start that it has
 * what it needs, and names each missing package otherwise. */
export function findPython(explicit?: string): string {
  return explicit ?? process.env.THINKCELLS_PYTHON ?? venvProgram("python", "python3");
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readSession(file: string): SessionInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(file, "utf8")) as SessionInfo;
    return pidAlive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
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
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    const infoFile = path.join(dir, `${opts.session}.json`);
    const logFile = path.join(dir, `${opts.session}.log`);
    let info = readSession(infoFile);
    if (info && info.protocol_version !== PROTOCOL_VERSION) {
      throw new BridgeError("handshake", "connect", `the bridge running for session "${opts.session}" (pid ${info.pid}) speaks protocol ${info.protocol_version}, this library ${PROTOCOL_VERSION}: stop it (kill ${info.pid}) or use another session`);
    }
    // A session file can outlive its bridge (killed, or a zombie not yet reaped): when its
    // socket refuses us, start a new bridge.
    let socket = info ? await openSocket(info.socket).catch(() => undefined) : undefined;
    if (!info || !socket) {
      info = await BridgeClient.start(opts, dir, infoFile, logFile);
      const socketPath = info.socket;
      socket = await openSocket(socketPath).catch((err: Error) => {
        throw new BridgeError("start_failed", "connect", `cannot reach the bridge at ${socketPath}: ${err.message}`);
      });
    }
    const client = new BridgeClient(socket, opts.session, logFile, infoFile);
    try {
      client.hello = await client.call("hello", {
        token: info.token,
        protocol_version: PROTOCOL_VERSION,
        client: `thinkcells pid ${process.pid}`,
      });
    } catch (err) {
      client.close();
      if (err instanceof BridgeError && err.kind !== "crashed") {
        throw new BridgeError("handshake", "connect", err.message, err.remoteTraceback);
      }
      throw err;
    }
    return client;
  }

  private static async start(
    opts: z.output<typeof BridgeOptions>,
    dir: string,
    infoFile: string,
    logFile: string,
  ): Promise<SessionInfo> {
    const python = findPython(opts.python);
    const log = openSync(logFile, "a", 0o600);
    const logStart = statSync(logFile).size;
    const args = ["-m", "thinkcells_bridge", "--session", opts.session, "--dir", dir,
      "--idle-timeout", String(opts.idleTimeoutS), "--device", opts.device, "--threads", String(opts.threads)];
    const child = spawn(python, args, {
      cwd: bridgePackageDir,
      env: { ...process.env, PYTHONPATH: [bridgePackageDir, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) },
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
    const deadline = Date.now() + opts.startTimeoutMs;
    while (Date.now() < deadline) {
      const info = existsSync(infoFile) ? readSession(infoFile) : undefined;
      // Ours, or, when another client started one at the same moment, theirs.
      if (info && (info.pid === child.pid || exited === EXIT_CODES.already_running)) return info;
      if (spawnError) {
        const from = opts.python ? "the python option" : process.env.THINKCELLS_PYTHON ? "THINKCELLS_PYTHON" : "the default; run `npm run setup` to make .venv";
        throw new BridgeError("start_failed", "connect", `cannot run ${python} (${from}): ${spawnError.message}`);
      }
      if (exited === EXIT_CODES.unfit_environment) {
        throw new BridgeError("start_failed", "connect", readFileSync(logFile, "utf8").slice(logStart).trim());
      }
      if (exited !== undefined && exited !== EXIT_CODES.already_running) {
        throw new BridgeError("start_failed", "connect", `the bridge exited with code ${exited} while starting (${python}). Its log ${logFile}:\n${tail(logFile)}`);
      }
      await sleep(50);
    }
    child.kill();
    throw new BridgeError("start_failed", "connect", `the bridge did not start within ${opts.startTimeoutMs} ms. Its log ${logFile}:\n${tail(logFile)}`);
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Sends one request; tensors in `body` travel as binary. An aborted `signal` cancels it. */
  call<Op extends OpName>(op: Op, body: OpRequest<Op>, options: { signal?: AbortSignal } = {}): Promise<OpResponse<Op>> {
    if (this.closedReason !== undefined) {
      return Promise.reject(new BridgeError("crashed", op, `${this.closedReason}; connect again to start a new bridge${this.logHint()}`));
    }
    const wire = dehydrate(body);
    const parsed = ops[op].request.safeParse(wire.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return Promise.reject(new BridgeError("invalid_request", op, `${issue.path.join(".") || "(body)"}: ${issue.message}`));
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
          this.socket.write(encodeFrame({ id: cancelId, op: "cancel", body: { request_id: id }, buffers: [] }, Buffer.alloc(0)));
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
      pending.reject(new BridgeError("internal", pending.op, `malformed response: ${parsed.error.issues[0]?.message}`));
      return;
    }
    const message = parsed.data;
    if (!message.ok) {
      const kind = (["bad_input", "invalid_request", "cancelled"] as const).find((k) => k === message.error.type) ?? "internal";
      pending.reject(new BridgeError(kind, pending.op, message.error.message, message.error.traceback));
      return;
    }
    const schema = ops[pending.op as OpName]?.response;
    const body = schema ? schema.safeParse(message.body) : { success: true as const, data: message.body };
    if (!body.success) {
      pending.reject(new BridgeError("internal", pending.op, `response does not match the protocol: ${body.error.issues[0]?.path.join(".")}: ${body.error.issues[0]?.message}`));
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
