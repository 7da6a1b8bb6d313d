/** Turns a kernel's iopub messages into nbformat 4 outputs, the way a front end shows them:
 * consecutive stream text joined, update_display_data applied to every earlier output with the
 * same display_id (so the saved notebook holds a live chart's final figure), clear_output. */

export type MimeData = Record<string, unknown>;

export type Output =
  | { output_type: "stream"; name: "stdout" | "stderr"; text: string }
  | { output_type: "display_data"; data: MimeData; metadata: Record<string, unknown> }
  | { output_type: "execute_result"; data: MimeData; metadata: Record<string, unknown>; execution_count: number | null }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

export interface IopubMessage {
  header: { msg_type: string };
  content: Record<string, unknown>;
}

type DataOutput = Extract<Output, { data: MimeData }>;

/** Outputs of every cell of one run; display ids reach across cells. */
export class OutputCollector {
  private readonly byDisplayId = new Map<string, DataOutput[]>();
  private clearPending = false;

  /** Handles one message for the cell whose outputs are `outputs`; returns false for messages
   * that are not outputs (status, execute_input, …). */
  add(outputs: Output[], msg: IopubMessage): boolean {
    const c = msg.content;
    switch (msg.header.msg_type) {
      case "stream": {
        this.flushClear(outputs);
        const name = c.name === "stderr" ? "stderr" : "stdout";
        const last = outputs.at(-1);
        if (last?.output_type === "stream" && last.name === name) last.text += String(c.text);
        else outputs.push({ output_type: "stream", name, text: String(c.text) });
        return true;
      }
      case "display_data":
      case "execute_result": {
        this.flushClear(outputs);
        const data = normalizeData(c.data);
        const metadata = (c.metadata as Record<string, unknown> | undefined) ?? {};
        const output: DataOutput =
          msg.header.msg_type === "display_data"
            ? { output_type: "display_data", data, metadata }
            : {
                output_type: "execute_result",
                data,
                metadata,
                execution_count: (c.execution_count as number | undefined) ?? null,
              };
        outputs.push(output);
        const id = displayId(c);
        if (id !== undefined) this.byDisplayId.set(id, [...(this.byDisplayId.get(id) ?? []), output]);
        return true;
      }
      case "update_display_data": {
        const id = displayId(c);
        for (const output of (id !== undefined && this.byDisplayId.get(id)) || []) {
          output.data = normalizeData(c.data);
          output.metadata = (c.metadata as Record<string, unknown> | undefined) ?? {};
        }
        return true;
      }
      case "error":
        this.flushClear(outputs);
        outputs.push({
          output_type: "error",
          ename: String(c.ename ?? "Error"),
          evalue: String(c.evalue ?? ""),
          traceback: Array.isArray(c.traceback) ? c.traceback.map(String) : [],
        });
        return true;
      case "clear_output":
        // wait=true: clear when the next output arrives, as front ends do to avoid flicker.
        if (c.wait) this.clearPending = true;
        else outputs.length = 0;
        return true;
      default:
        return false;
    }
  }

  private flushClear(outputs: Output[]): void {
    if (!this.clearPending) return;
    this.clearPending = false;
    outputs.length = 0;
  }
}

function displayId(content: Record<string, unknown>): string | undefined {
  const id = (content.transient as { display_id?: unknown } | undefined)?.display_id;
  return typeof id === "string" ? id : undefined;
}

/** nbformat stores MIME types ending in +json (and application/json) as JSON, the rest as text. */
function normalizeData(data: unknown): MimeData {
  const out: MimeData = {};
  for (const [mime, value] of Object.entries((data as MimeData | undefined) ?? {})) {
    const isJson = mime === "application/json" || mime.endsWith("+json");
    out[mime] =
      isJson || typeof value === "string" ? value : Array.isArray(value) ? value.join("") : JSON.stringify(value);
  }
  return out;
}
