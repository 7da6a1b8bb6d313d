/** A run notebook as one self-contained HTML page that works offline: markdown, code, outputs
 * (plotly charts drawn by an inlined plotly.js), per-cell timing, and links to failed cells. */
import { escapeHtml } from "../cells-lib/display/html.ts";
import { type RenderedCell, type ReportCell, renderCell } from "./html-cells.ts";
import { plotlyScripts } from "./html-plotly.ts";
import { REPORT_CSS } from "./html-style.ts";
import { formatSeconds } from "./html-timing.ts";

export type { ReportCell } from "./html-cells.ts";

/** The parts of an nbformat 4 notebook the report reads (kernel/notebook.ts's Notebook fits). */
export interface ReportNotebook {
  metadata?: Record<string, unknown>;
  cells: readonly ReportCell[];
}

export interface ReportOptions {
  /** Defaults to the notebook's metadata.title, then "Notebook". */
  title?: string;
}

export function renderNotebookHtml(notebook: ReportNotebook, options: ReportOptions = {}): string {
  const metadata = notebook.metadata ?? {};
  const title = options.title ?? (typeof metadata.title === "string" ? metadata.title : "Notebook");
  const cells = notebook.cells.map((cell, i) => renderCell(cell, i + 1));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${REPORT_CSS}</style>
</head>
<body>
<header class="report-head">
<h1>${escapeHtml(title)}</h1>
${summaryHtml(cells, metadata)}
${errorBanner(cells)}
</header>
<main>
${cells.map((c) => c.html).join("\n")}
</main>
${cells.some((c) => c.chart) ? plotlyScripts() : ""}
</body>
</html>
`;
}

/** "5 code cells · ran 1 min 12 s · kernel Deno". */
function summaryHtml(cells: RenderedCell[], metadata: Record<string, unknown>): string {
  const code = cells.filter((c) => c.kind === "code").length;
  const parts = [`${code} code cell${code === 1 ? "" : "s"}`];
  const timed = cells.flatMap((c) => (c.timing ? [c.timing.seconds] : []));
  if (timed.length > 0) parts.push(`ran ${formatSeconds(timed.reduce((a, b) => a + b, 0))}`);
  const kernelspec = metadata.kernelspec as { display_name?: unknown } | undefined;
  if (typeof kernelspec?.display_name === "string") parts.push(`kernel ${kernelspec.display_name}`);
  return `<p class="summary">${escapeHtml(parts.join(" · "))}</p>`;
}

function errorBanner(cells: RenderedCell[]): string {
  const failed = cells.flatMap((cell, i) => cell.errors.map((error) => ({ cell, number: i + 1, error })));
  if (failed.length === 0) return "";
  const items = failed.map(
    ({ cell, number, error }) =>
      `<li><a href="#${escapeHtml(cell.anchor)}">Cell ${number}</a>: ${escapeHtml(`${error.ename}: ${error.evalue}`)}</li>`,
  );
  const cellCount = new Set(failed.map((f) => f.number)).size;
  return `<nav class="error-banner" role="alert"><strong>${cellCount === 1 ? "A cell failed" : `${cellCount} cells failed`}</strong>
<ul>${items.join("")}</ul></nav>`;
}
