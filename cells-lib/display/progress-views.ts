/** Where a progress bar is drawn: a terminal line, or an updating notebook output. */
import { randomUUID } from "node:crypto";
import { escapeHtml } from "./html.ts";
import { type ProgressSnapshot, progressLine, progressParts } from "./progress-line.ts";
import { Throttle } from "./throttle.ts";
import type { MimeBundle, Renderer, Terminal } from "./types.ts";

export interface ProgressView {
  /** The counts changed: redraw when the view's pace allows. */
  changed(): void;
  /** Draw the final state. */
  finish(): void;
}

/** A terminal redraws at most 10 times a second; a notebook output 4 times. */
const TTY_REDRAW_MS = 100;
const NOTEBOOK_REDRAW_MS = 250;

/** On a TTY: one line redrawn in place. Otherwise (logs, pipes): a whole line at most every
 * `logEveryMs`, and the final one. */
export function terminalView(
  terminal: Terminal,
  snapshot: () => ProgressSnapshot,
  now: () => number,
  logEveryMs: number,
): ProgressView {
  if (terminal.isTTY) {
    const draw = (end: string) => terminal.write(`\r${progressLine(snapshot())}\x1b[K${end}`);
    const throttle = new Throttle(TTY_REDRAW_MS, () => draw(""), now);
    throttle.request();
    return {
      changed: () => throttle.request(),
      finish: () => {
        throttle.cancel();
        draw("\n");
      },
    };
  }
  let lastLogged = now();
  return {
    changed: () => {
      if (now() - lastLogged < logEveryMs) return;
      lastLogged = now();
      terminal.write(`${progressLine(snapshot())}\n`);
    },
    finish: () => terminal.write(`${progressLine(snapshot())}\n`),
  };
}

export function notebookView(renderer: Renderer, snapshot: () => ProgressSnapshot, now: () => number): ProgressView {
  const displayId = `thinkcells-progress-${randomUUID()}`;
  const throttle = new Throttle(
    NOTEBOOK_REDRAW_MS,
    () => renderer.update(progressBundle(snapshot()), { displayId, final: false }),
    now,
  );
  renderer.display(progressBundle(snapshot()), { displayId });
  throttle.startInterval();
  return {
    changed: () => throttle.request(),
    finish: () => {
      throttle.cancel();
      renderer.update(progressBundle(snapshot()), { displayId, final: true });
    },
  };
}

function progressBundle(s: ProgressSnapshot): MimeBundle {
  const p = progressParts(s);
  const label = p.label === undefined ? "" : `<span style="font-weight:bold">${escapeHtml(p.label)}</span> `;
  const text = [p.counts, p.percent, p.rate, p.time, p.info]
    .filter((x) => x)
    .map(escapeHtml)
    .join(" &middot; ");
  const html =
    `<div class="thinkcells-progress" style="font-family:monospace;font-size:13px;line-height:1.6">` +
    `${label}<progress value="${p.fraction}" max="1" style="width:30%;vertical-align:middle"></progress> ${text}</div>`;
  return { "text/html": html, "text/plain": progressLine(s) };
}
