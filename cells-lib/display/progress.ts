/** `progress({ total })`: a progress bar with rate and ETA, in a notebook or a terminal. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import type { ProgressSnapshot } from "./progress-line.ts";
import { notebookView, terminalView } from "./progress-views.ts";
import { currentRenderer } from "./renderer.ts";

const ProgressOptions = z
  .object({
    total: z
      .number({ error: "total must be the number of items (a whole number ≥ 0)" })
      .int("total must be a whole number")
      .nonnegative("total must be ≥ 0"),
    label: z.string().optional(),
    /** What one item is called in the rate: "it" → "12.5 it/s"; "step", "sample", … */
    unit: z.string().min(1).default("it"),
    /** Without a TTY (logs, pipes), a line is printed at most this often. */
    logEveryMs: z.number().positive().default(5000),
    /** The clock, in milliseconds (tests and replays pass their own). */
    now: z
      .custom<() => number>((v) => typeof v === "function", "now must be a function returning milliseconds")
      .optional(),
  })
  .strict();
export type ProgressOptions = z.input<typeof ProgressOptions>;

export interface Progress {
  readonly count: number;
  /** Counts `n` more items done; `info` values (loss, reward, …) are shown after the bar. */
  tick(n?: number, info?: Readonly<Record<string, number | string>>): void;
  /** Draws the final state. Calling it again does nothing. */
  done(): void;
}

export function progress(options: ProgressOptions): Progress {
  const o = parseOptions(ProgressOptions, options, "progress");
  const now = o.now ?? Date.now;
  const renderer = currentRenderer();
  const startedAt = now();
  const state: Omit<ProgressSnapshot, "elapsedMs"> = { unit: o.unit, count: 0, total: o.total, info: {}, done: false };
  if (o.label !== undefined) state.label = o.label;
  const snapshot = (): ProgressSnapshot => ({ ...state, elapsedMs: now() - startedAt });
  const view = renderer.terminal
    ? terminalView(renderer.terminal, snapshot, now, o.logEveryMs)
    : notebookView(renderer, snapshot, now);

  return {
    get count() {
      return state.count;
    },
    tick(n = 1, info) {
      if (state.done) throw new Error(`progress${o.label ? ` "${o.label}"` : ""}: tick() after done()`);
      if (typeof n !== "number" || !Number.isFinite(n) || n < 0)
        throw new TypeError(`progress.tick: n must be a finite number ≥ 0, got ${String(n)}`);
      if (info !== undefined) state.info = { ...state.info, ...checkInfo(info) };
      state.count += n;
      view.changed();
    },
    done() {
      if (state.done) return;
      state.done = true;
      view.finish();
    },
  };
}

function checkInfo(info: unknown): Record<string, number | string> {
  if (typeof info !== "object" || info === null || Array.isArray(info)) {
    throw new TypeError("progress.tick: info must be an object such as { loss: 0.53 }");
  }
  for (const [k, v] of Object.entries(info)) {
    if (typeof v !== "number" && typeof v !== "string")
      throw new TypeError(`progress.tick: info "${k}" must be a number or a string, got ${typeof v}`);
  }
  return info as Record<string, number | string>;
}
