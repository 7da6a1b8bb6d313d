/** Renderer for Deno's Jupyter kernel (`deno jupyter`). */
import { reportDisplayError } from "./report.ts";
import type { DisplayOptions, MimeBundle, Renderer, UpdateOptions } from "./types.ts";

interface DenoJupyter {
  broadcast(msgType: string, content: Record<string, unknown>): Promise<void>;
}

/** `Deno.jupyter` when running inside Deno's kernel, otherwise undefined. Outside the kernel
 * Deno defines `Deno.jupyter` as a getter that throws, hence the try. */
export function findDenoJupyter(): DenoJupyter | undefined {
  const deno: unknown = (globalThis as { Deno?: unknown }).Deno;
  if (typeof deno !== "object" || deno === null) return undefined;
  try {
    const jupyter: unknown = (deno as { jupyter?: unknown }).jupyter;
    if (typeof jupyter !== "object" || jupyter === null) return undefined;
    const broadcast: unknown = (jupyter as { broadcast?: unknown }).broadcast;
    if (typeof broadcast !== "function") return undefined;
    return { broadcast: (msgType, content) => Promise.resolve(broadcast.call(jupyter, msgType, content)) };
  } catch {
    return undefined;
  }
}

/** Sends iopub messages with `Deno.jupyter.broadcast`. `Deno.jupyter.display(bundle, { raw,
 * display_id, update })` produces the same messages (checked in Deno 2.9's source), but it
 * awaits before sending; broadcasting directly queues each message when it is made, so outputs
 * keep the order of the calls. */
export class DenoKernelRenderer implements Renderer {
  constructor(private readonly jupyter: DenoJupyter) {}

  display(bundle: MimeBundle, options: DisplayOptions = {}): void {
    this.send("display_data", bundle, options.displayId);
  }

  update(bundle: MimeBundle, options: UpdateOptions): void {
    this.send("update_display_data", bundle, options.displayId);
  }

  private send(msgType: string, data: MimeBundle, displayId: string | undefined): void {
    // `transient` must be an object even without an id: nbclient reads transient.display_id.
    const transient = displayId === undefined ? {} : { display_id: displayId };
    this.jupyter.broadcast(msgType, { data, metadata: {}, transient }).catch(reportDisplayError);
  }
}
