/** A renderer that keeps every output: for tests and for runners that save notebooks. */
import type { DisplayOptions, MimeBundle, Renderer, Terminal, UpdateOptions } from "./types.ts";

export type RecordedOutput =
  | { kind: "display"; bundle: MimeBundle; displayId?: string }
  | { kind: "update"; bundle: MimeBundle; displayId: string; final: boolean };

export class RecordingRenderer implements Renderer {
  readonly outputs: RecordedOutput[] = [];

  /** With a terminal, progress bars are drawn to it (as headless) instead of being displayed. */
  constructor(readonly terminal?: Terminal) {}

  display(bundle: MimeBundle, options: DisplayOptions = {}): void {
    const output: RecordedOutput = { kind: "display", bundle };
    if (options.displayId !== undefined) output.displayId = options.displayId;
    this.outputs.push(output);
  }

  update(bundle: MimeBundle, options: UpdateOptions): void {
    this.outputs.push({ kind: "update", bundle, displayId: options.displayId, final: options.final });
  }

  /** What a notebook shows in the end: each display with its updates applied. */
  finalBundles(): MimeBundle[] {
    const shown: { bundle: MimeBundle; displayId?: string }[] = [];
    for (const o of this.outputs) {
      if (o.kind === "display") shown.push({ bundle: o.bundle, displayId: o.displayId });
      else for (const s of shown) if (s.displayId === o.displayId) s.bundle = o.bundle;
    }
    return shown.map((s) => s.bundle);
  }
}
