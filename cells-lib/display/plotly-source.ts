/** plotly.js from the installed npm package (no CDN: kernels may run offline), and which
 * renderers' front ends have been sent it already. */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import type { Renderer } from "./types.ts";

let source: string | undefined;

/** plotly.min.js (~4.8 MB), read once. */
export function plotlySource(): string {
  source ??= readFileSync(createRequire(import.meta.url).resolve("plotly.js-dist-min/plotly.min.js"), "utf8");
  return source;
}

let sentTo = new WeakSet<Renderer>();

/** true the first time for each renderer: that chart carries plotly.js, later ones reuse the
 * front end's window.Plotly. A renderer lives as long as the kernel session. */
export function firstChartFor(renderer: Renderer): boolean {
  // The headless runner's report inlines plotly.js itself; a 4.8 MB iopub message is sometimes
  // lost between jupyter-server and @jupyterlab/services, so headless kernels don't send it.
  if (process.env.THINKCELLS_PLOTLY_INLINE === "0") return false;
  if (sentTo.has(renderer)) return false;
  sentTo.add(renderer);
  return true;
}

/** Makes the next chart carry plotly.js again: after reloading the notebook page (which loses
 * window.Plotly while the kernel keeps running). */
export function resetPlotly(): void {
  sentTo = new WeakSet();
}
