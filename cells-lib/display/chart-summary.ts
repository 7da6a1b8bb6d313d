/** A plotly figure as text: its traces, how many points each has, and where each ends. */

import type { FigureJson } from "./chart-html.ts";
import { formatNumber, formatValue } from "./format.ts";

export function chartSummary(figure: FigureJson): string {
  const title = figureTitle(figure.layout);
  const n = figure.data.length;
  const lines = [`${title ?? "Chart"}: ${n} trace${n === 1 ? "" : "s"}`];
  figure.data.forEach((trace, i) => lines.push(`  ${traceSummary(trace, i)}`));
  return lines.join("\n");
}

function traceSummary(trace: unknown, i: number): string {
  const t = (typeof trace === "object" && trace !== null ? trace : {}) as Record<string, unknown>;
  const name = typeof t.name === "string" && t.name ? t.name : `trace ${i + 1}`;
  const type = typeof t.type === "string" ? t.type : "scatter";
  // Which array holds the points depends on the trace type: y for lines and bars, values for
  // pies, z for heatmaps, x for histograms.
  const values = [t.y, t.values, t.z, t.x].find(Array.isArray);
  const xs = Array.isArray(t.x) && values !== t.x ? t.x : undefined;
  if (!values || values.length === 0) return `${name} (${type}): no points`;
  const count = `${values.length} point${values.length === 1 ? "" : "s"}`;
  const lastIndex = lastFilled(values);
  if (lastIndex < 0) return `${name} (${type}): ${count}, all empty`;
  const at = xs && xs[lastIndex] !== undefined ? ` at x=${show(xs[lastIndex])}` : "";
  return `${name} (${type}): ${count}, last ${show(values[lastIndex])}${at}`;
}

/** The last point with a value: NaN losses are stored as null gaps. */
function lastFilled(values: unknown[]): number {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return i;
  return -1;
}

function show(v: unknown): string {
  if (typeof v === "number") return formatNumber(v);
  if (Array.isArray(v)) return `[${v.length} values]`;
  return formatValue(v);
}

function figureTitle(layout: Record<string, unknown> | undefined): string | undefined {
  const title = layout?.title;
  if (typeof title === "string") return title;
  if (typeof title === "object" && title !== null && typeof (title as { text?: unknown }).text === "string") {
    return (title as { text: string }).text;
  }
  return undefined;
}
