/** The renderer in use: chosen from the runtime on first use, or set explicitly. */
import { DenoKernelRenderer, findDenoJupyter } from "./deno-kernel.ts";
import { TerminalRenderer } from "./terminal.ts";
import { findTslab, TslabRenderer } from "./tslab-kernel.ts";
import type { Renderer } from "./types.ts";

let explicit: Renderer | undefined;
let detected: Renderer | undefined;

/** Deno's kernel, then tslab's, then the terminal. */
export function detectRenderer(): Renderer {
  const deno = findDenoJupyter();
  if (deno) return new DenoKernelRenderer(deno);
  const tslab = findTslab();
  if (tslab) return new TslabRenderer(tslab);
  return new TerminalRenderer();
}

export function currentRenderer(): Renderer {
  if (explicit) return explicit;
  detected ??= detectRenderer();
  return detected;
}

/** Sends every later output to `renderer` (undefined: back to the detected one). Returns the
 * renderer set before, so a caller can restore it. */
export function setRenderer(renderer: Renderer | undefined): Renderer | undefined {
  const previous = explicit;
  explicit = renderer;
  return previous;
}
