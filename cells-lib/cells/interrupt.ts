/** The kernel's stop button (■) for thinkcells' long-running cells: trainers' `run` and `step`
 * (so trainSft and trainDpo), `sample` and `evaluate`.
 *
 * Jupyter interrupts a kernel with SIGINT (the thinkcells kernelspec keeps the default interrupt
 * mode, "signal"). Deno's kernel exits on it and cannot interrupt running JavaScript
 * (denoland/deno#24491, #32367); tslab stops awaiting the cell but leaves its work running. So in
 * a kernel the first interruptible operation installs a SIGINT listener (which also keeps Deno's
 * kernel alive) that aborts the operations running: they stop before their next request to the
 * bridge, cancel the one in flight, and throw an InterruptedError that says what stopped and how
 * to go on. Outside a kernel (a script, the CLI) none is installed: Ctrl-C still ends the process. */
import process from "node:process";
import { BridgeError } from "../bridge/errors.ts";
import { findDenoJupyter } from "../display/deno-kernel.ts";
import { findTslab } from "../display/tslab-kernel.ts";
import type { Model } from "./model.ts";

/** A training cell's trainer, as an interrupted run leaves it: `run()` continues the run. */
export interface InterruptedRun {
  readonly model: Model;
  /** The steps applied. */
  readonly history: readonly unknown[];
  run(count?: number): Promise<unknown[]>;
}

/** An operation the kernel's interrupt stopped. */
export class InterruptedError extends Error {
  override name = "InterruptedError";
  constructor(
    /** The cell that stopped ("trainSft", "grpo", "sample", "evaluate"), first in the message. */
    readonly cell: string,
    /** Where it stopped and how to go on. */
    detail: string,
    /** A training cell's trainer: its `run()` continues where the interrupt stopped it. */
    readonly trainer?: InterruptedRun,
  ) {
    super(`${cell}: interrupted (the kernel's stop button) ${detail}`);
  }
}

let controller = new AbortController();
/** The interruptible operations running now, outermost first. */
const running: string[] = [];
let listening = false;
let last: InterruptedError | undefined;

/** The InterruptedError an operation threw last: after an interrupted trainSft or trainDpo, which
 * keep their trainer to themselves, `lastInterrupt()?.trainer?.run()` continues the run. */
export function lastInterrupt(): InterruptedError | undefined {
  return last;
}

/** What the kernel's interrupt does: aborts the operations running now (a later one gets a fresh
 * signal). False when none was running. */
export function interrupt(): boolean {
  if (running.length === 0) return false;
  // A step can take a while to reach its next request: say at once that the stop was heard.
  console.error(`thinkcells: interrupt received: stopping ${running[0]}`);
  controller.abort();
  controller = new AbortController();
  return true;
}

function listen(): void {
  if (listening) return;
  listening = true;
  if (findDenoJupyter() === undefined && !findTslab()) return;
  // Deno's node:process listens with Deno.addSignalListener, which keeps its kernel from exiting on SIGINT.
  // With nothing running it stays silent: Jupyter also sends SIGINT before every shutdown and restart,
  // and a message then would land in the last cell's saved outputs.
  process.on("SIGINT", () => {
    interrupt();
  });
}

export interface Interruptible {
  /** The cell, first in messages. */
  cell: string;
  /** The caller's own `signal` option. */
  signal?: AbortSignal | undefined;
  /** Where an interrupt stopped it and how to go on (the error's message after its cell). */
  detail(): string;
  trainer?: InterruptedRun;
}

/** Runs `operation` with a signal that aborts on the caller's `signal` and on the kernel's
 * interrupt; an interrupt it stopped at is thrown as an InterruptedError with `what.detail()`. */
export async function interruptible<T>(
  what: Interruptible,
  operation: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  listen();
  const kernel = controller.signal;
  running.push(what.cell);
  try {
    return await operation(what.signal ? AbortSignal.any([what.signal, kernel]) : kernel);
  } catch (err) {
    // How an operation ends when aborted: the signal's reason (throwIfAborted), the bridge's
    // "cancelled", or an inner operation's InterruptedError (the outer one names the cell the user ran).
    const stopped =
      err === kernel.reason ||
      err instanceof InterruptedError ||
      (err instanceof BridgeError && err.kind === "cancelled");
    if (!kernel.aborted || !stopped) throw err;
    last = new InterruptedError(what.cell, what.detail(), what.trainer);
    // tslab answers the interrupt itself ("Interrupted asynchronously") and stops awaiting the
    // cell, so this error reaches no one there: print what stopped and how to go on.
    if (findTslab()) console.error(`${last.name}: ${last.message}`);
    throw last;
  } finally {
    running.splice(running.lastIndexOf(what.cell), 1);
  }
}
