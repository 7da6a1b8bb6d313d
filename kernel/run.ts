/** `thinkcells run`: executes a notebook headless through jupyter-server and a kernel (by
 * default the thinkcells Deno kernel), papermill-style: parameters injected, per-cell timeout
 * and timing, the executed notebook saved even when a cell fails, an optional HTML report. */
import { randomBytes } from "node:crypto";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { type Kernel, KernelManager, type KernelMessage, ServerConnection, SessionManager } from "@jupyterlab/services";
import WebSocket from "ws";
import { formatDuration } from "../cells-lib/display/format.ts";
import { writeFileAtomic } from "../cells-lib/util/atomic.ts";
import { findSyntaxError } from "./deno-diagnostics.ts";
import { renderNotebookHtml } from "./html-report.ts";
import { type JupyterServer, startJupyterServer } from "./jupyter-server.ts";
import { KERNEL_NAME } from "./kernelspec.ts";
import { cellName, cellSource, firstLine, type Notebook, readNotebook } from "./notebook.ts";
import { type IopubMessage, type Output, OutputCollector } from "./outputs.ts";
import { injectParameters } from "./parameters.ts";

export interface RunOptions {
  /** name → value text, as given with `-p name=value`. */
  parameters?: ReadonlyMap<string, string>;
  /** Where to write the executed notebook (default: none). */
  out?: string;
  /** Where to write the HTML report (default: none). */
  html?: string;
  /** Per-cell limit in seconds. */
  timeoutS?: number;
  kernel?: string;
  /** An already running server, `http://host:port/?token=…` (token also from JUPYTER_TOKEN). */
  server?: string;
  /** Progress lines (cell i of n, elapsed); the CLI prints them to stderr. */
  log?: (line: string) => void;
}

export interface CellFailure {
  /** 1-based index among all cells of the executed notebook, as a notebook UI counts them. */
  cell: number;
  id: string;
  /** The cell as messages name it: "cell 2 (id fails)". */
  name: string;
  ename: string;
  evalue: string;
  /** Where in the cell, when known (a syntax error): 1-based line and column. */
  at?: { line: number; column: number };
  timedOut: boolean;
}

export interface RunResult {
  ok: boolean;
  failure?: CellFailure;
  notebook: ExecutedNotebook;
  wallS: number;
}

interface ExecutedCell {
  id: string;
  cell_type: "code" | "markdown" | "raw";
  source: string;
  metadata: Record<string, unknown>;
  outputs?: Output[];
  execution_count?: number | null;
}

export interface ExecutedNotebook {
  nbformat: 4;
  nbformat_minor: 5;
  metadata: Record<string, unknown>;
  cells: ExecutedCell[];
}

const newCellId = () => randomBytes(4).toString("hex");
const VALID_ID = /^[a-zA-Z0-9-_]{1,64}$/;

function prepareCells(notebook: Notebook): ExecutedCell[] {
  const seen = new Set<string>();
  return notebook.cells.map((cell) => {
    // nbformat 4.5 requires unique ids; older notebooks have none.
    let id = typeof cell.id === "string" && VALID_ID.test(cell.id) && !seen.has(cell.id) ? cell.id : newCellId();
    while (seen.has(id)) id = newCellId();
    seen.add(id);
    const base = { id, cell_type: cell.cell_type, source: cellSource(cell), metadata: { ...cell.metadata } };
    if (cell.cell_type !== "code")
      return cell.cell_type === "raw" || !cell.attachments ? base : { ...base, attachments: cell.attachments };
    delete base.metadata.execution;
    return { ...base, outputs: [], execution_count: null };
  });
}

export function serverSettings(server: string): ServerConnection.ISettings {
  const url = new URL(server);
  const token = url.searchParams.get("token") ?? process.env.JUPYTER_TOKEN ?? "";
  url.search = "";
  return ServerConnection.makeSettings({
    baseUrl: url.href,
    wsUrl: url.href.replace(/^http/, "ws"),
    token,
    appendToken: true,
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  });
}

/** Waits for the execute reply, the kernel's death, or `timeoutS`. */
async function executeCell(
  kernel: Kernel.IKernelConnection,
  code: string,
  onRequest: (msgId: string) => void,
  timeoutS: number | undefined,
): Promise<KernelMessage.IExecuteReplyMsg | "timeout" | "dead"> {
  const future = kernel.requestExecute({ code, stop_on_error: true, allow_stdin: false, store_history: true });
  onRequest(future.msg.header.msg_id);
  let timer: NodeJS.Timeout | undefined;
  let onStatus: ((k: Kernel.IKernelConnection, status: Kernel.Status) => void) | undefined;
  const outcome = new Promise<"timeout" | "dead">((resolve) => {
    if (timeoutS !== undefined) timer = setTimeout(() => resolve("timeout"), timeoutS * 1000);
    onStatus = (_k, status) => {
      if (status === "dead" || status === "autorestarting") resolve("dead");
    };
    kernel.statusChanged.connect(onStatus);
  });
  try {
    return await Promise.race([
      future.done.then(
        (reply) => reply as KernelMessage.IExecuteReplyMsg,
        () => "dead" as const,
      ),
      outcome,
    ]);
  } finally {
    clearTimeout(timer);
    kernel.statusChanged.disconnect(onStatus!);
  }
}

export async function runNotebook(notebookFile: string, options: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const source = await readNotebook(notebookFile);
  const name = path.basename(notebookFile);
  const { cells } = injectParameters(
    prepareCells(source),
    options.parameters ?? new Map(),
    (text): ExecutedCell => ({
      id: newCellId(),
      cell_type: "code",
      source: text,
      metadata: { tags: ["injected-parameters"] },
      outputs: [],
      execution_count: null,
    }),
    notebookFile,
  );
  const kernelName = options.kernel ?? KERNEL_NAME;
  const notebook: ExecutedNotebook = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { ...source.metadata },
    cells,
  };
  const code = cells
    .map((c, i) => ({ cell: c, index: i }))
    .filter(({ cell }) => cell.cell_type === "code" && cell.source.trim());
  let failure: CellFailure | undefined;
  let server: JupyterServer | undefined;
  let sessions: SessionManager | undefined;
  let kernels: KernelManager | undefined;
  try {
    log(
      `${name}: starting ${options.server ? `a kernel on ${new URL(options.server).host}` : "jupyter-server"} (kernel ${kernelName})`,
    );
    server = options.server ? undefined : await startJupyterServer(path.dirname(path.resolve(notebookFile)), { log });
    const settings = serverSettings(options.server ?? `${server!.baseUrl}?token=${server!.token}`);
    kernels = new KernelManager({ serverSettings: settings });
    sessions = new SessionManager({ kernelManager: kernels, serverSettings: settings });
    const session = await sessions.startNew({
      // The server starts the kernel in this path's directory; with --server that is relative to its root.
      path: options.server ? path.basename(notebookFile) : name,
      name,
      type: "notebook",
      kernel: { name: kernelName },
    });
    const kernel = session.kernel!;
    const info = await kernel.info;
    const spec = await kernel.spec;
    notebook.metadata.kernelspec = {
      name: kernelName,
      display_name: spec?.display_name ?? kernelName,
      language: spec?.language ?? info.language_info.name,
    };
    notebook.metadata.language_info = info.language_info;

    // Outputs are routed by their parent request from the kernel's whole iopub stream, not the
    // request's own handler: Deno sends Deno.jupyter.broadcast messages (a live chart's last
    // update) after the cell's reply, when its handler is already gone.
    const collector = new OutputCollector();
    const outputsOf = new Map<string, Output[]>();
    kernel.iopubMessage.connect((_k, msg) => {
      const outputs = outputsOf.get((msg.parent_header as { msg_id?: string }).msg_id ?? "");
      if (outputs) collector.add(outputs, msg as unknown as IopubMessage);
      else if (msg.header.msg_type === "update_display_data") collector.add([], msg as unknown as IopubMessage);
    });
    for (const [n, { cell, index }] of code.entries()) {
      const cellStart = Date.now();
      log(`[${n + 1}/${code.length}] cell ${index + 1}: ${firstLine(cell.source)}`);
      const timing: Record<string, string> = { "iopub.execute_input": new Date().toISOString() };
      const outputs = cell.outputs!;
      const result = await executeCell(kernel, cell.source, (msgId) => outputsOf.set(msgId, outputs), options.timeoutS);
      const content = typeof result === "string" ? undefined : result.content;
      timing["shell.execute_reply"] = new Date().toISOString();
      const durationS = (Date.now() - cellStart) / 1000;
      cell.metadata.execution = timing;
      cell.metadata.thinkcells = { ...(cell.metadata.thinkcells as object | undefined), duration_s: durationS };
      if (content) cell.execution_count = content.execution_count;
      log(
        `[${n + 1}/${code.length}] cell ${index + 1} ${content?.status === "ok" ? "done" : "failed"} ` +
          `in ${formatDuration(durationS * 1000)} (elapsed ${formatDuration(Date.now() - started)})`,
      );
      if (typeof result === "string") {
        // Deno's kernel does not survive an interrupt signal, so a cell over its time is stopped
        // with its kernel; the run ends here either way.
        const timedOut = result === "timeout";
        const ename = timedOut ? "CellTimeoutError" : "DeadKernelError";
        const evalue = timedOut
          ? `the cell ran longer than --timeout ${options.timeoutS} s; its kernel was stopped`
          : "the kernel died while running the cell";
        outputs.push(errorOutput(ename, evalue));
        failure = { cell: index + 1, id: cell.id, name: cellName(index + 1, cell), ename, evalue, timedOut };
        break;
      }
      if (content && content.status !== "ok") {
        const { error, at } = await failedCellError(cell.source, outputs, content);
        failure = {
          cell: index + 1,
          id: cell.id,
          name: cellName(index + 1, cell),
          ename: error.ename,
          evalue: error.evalue,
          ...(at ? { at } : {}),
          timedOut: false,
        };
        break;
      }
    }
    // Late messages of the last cell (see above) arrive within a few milliseconds.
    await sleep(300);
    await session.shutdown().catch(() => {});
  } finally {
    sessions?.dispose();
    kernels?.dispose();
    await server?.stop();
    notebook.metadata.thinkcells = {
      parameters: Object.fromEntries(options.parameters ?? []),
      started: new Date(started).toISOString(),
      wall_s: (Date.now() - started) / 1000,
      status: failure ? "failed" : "ok",
      ...(failure ? { failed_cell: failure.cell } : {}),
    };
    // Saved even when the run broke off: what ran so far is what the user needs to see.
    if (options.out) await writeFileAtomic(options.out, `${JSON.stringify(notebook, null, 1)}\n`);
    if (options.html)
      await writeFileAtomic(options.html, renderNotebookHtml(notebook as unknown as Notebook, { title: name }));
  }
  return { ok: !failure, ...(failure ? { failure } : {}), notebook, wallS: (Date.now() - started) / 1000 };
}

type ErrorOutput = Extract<Output, { output_type: "error" }>;

const errorOutput = (ename: string, evalue: string, traceback = [`${ename}: ${evalue}`]): ErrorOutput => ({
  output_type: "error",
  ename,
  evalue,
  traceback,
});

/** The error of a failed cell, added to its outputs when the kernel sent none: Deno's kernel
 * answers a cell it cannot parse with only "Execution failed", so Deno's parser is asked where
 * and why, and the saved notebook shows that as JupyterLab shows any error. */
async function failedCellError(
  source: string,
  outputs: Output[],
  reply: KernelMessage.IExecuteReplyMsg["content"],
): Promise<{ error: ErrorOutput; at?: CellFailure["at"] }> {
  const sent = outputs.find((o): o is ErrorOutput => o.output_type === "error");
  if (sent) return { error: sent };
  const syntax = reply.status === "error" ? await findSyntaxError(source) : undefined;
  if (!syntax) {
    // tslab's reply names no error: it writes the exception (after the line that threw it) or
    // its type errors ("1:7 - Type …") to stderr.
    const stderr = outputs.flatMap((o) =>
      o.output_type === "stream" && o.name === "stderr" ? o.text.split("\n") : [],
    );
    const thrown = stderr.map((l) => /^(\w*Error): (.*)$/.exec(l)).find((m) => m);
    const [, ename = "Error", evalue = stderr.find((l) => l.trim()) ?? "the kernel gave no reason"] = thrown ?? [];
    const error =
      reply.status === "error"
        ? errorOutput(reply.ename ?? ename, reply.evalue ?? evalue)
        : errorOutput("Aborted", "the kernel aborted the cell");
    outputs.push(error);
    return { error };
  }
  const { line, column } = syntax;
  const [, ename = "SyntaxError", evalue = syntax.message] = /^(\w+): ([\s\S]*)$/.exec(syntax.message) ?? [];
  const gutter = " ".repeat(String(line).length);
  // Deno's layout: the message, the line with a caret under the column, the position.
  const frame = [`${line} | ${source.split("\n")[line - 1] ?? ""}`, `${gutter} | ${" ".repeat(column - 1)}^`];
  const error = errorOutput(ename, evalue, [
    `${ename}: ${evalue}`,
    ...frame,
    `    at line ${line}:${column} of the cell`,
  ]);
  outputs.push(error);
  return { error, at: { line, column } };
}

/** For messages and exit status: which cell failed, where in it when known, and how. */
export function describeFailure(file: string, failure: CellFailure): string {
  const at = failure.at ? ` at line ${failure.at.line}:${failure.at.column}` : "";
  return `${file}: ${failure.name} failed${at}: ${failure.ename}: ${failure.evalue}`;
}
