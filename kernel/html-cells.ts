/** One notebook cell as a report section. */
import { escapeHtml } from "../cells-lib/display/html.ts";
import { type Attachments, renderMarkdown } from "./html-markdown.ts";
import { type CellError, renderOutputs } from "./html-outputs.ts";
import { joinText } from "./html-text.ts";
import { type CellTiming, cellTiming, formatSeconds } from "./html-timing.ts";

/** The fields of an nbformat 4 cell the report reads; anything else is ignored. */
export interface ReportCell {
  cell_type: string;
  source: string | string[];
  id?: unknown;
  metadata?: Record<string, unknown>;
  execution_count?: unknown;
  outputs?: unknown;
  attachments?: unknown;
}

export interface RenderedCell {
  kind: "code" | "markdown" | "raw";
  html: string;
  /** The section's id, for links to it. */
  anchor: string;
  chart: boolean;
  errors: CellError[];
  timing?: CellTiming;
}

const NBFORMAT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** `number` is the cell's 1-based position among all cells, as notebook UIs count them. */
export function renderCell(cell: ReportCell, number: number): RenderedCell {
  const anchor = typeof cell.id === "string" && NBFORMAT_ID.test(cell.id) ? cell.id : `cell-${number}`;
  const source = joinText(cell.source);
  const section = (kind: string, body: string) =>
    `<section class="cell ${kind}" id="${escapeHtml(anchor)}">\n${body}\n</section>`;
  if (cell.cell_type === "markdown") {
    const attachments = (isObject(cell.attachments) ? cell.attachments : {}) as Attachments;
    const html = section("markdown-cell", renderMarkdown(source, attachments));
    return { kind: "markdown", html, anchor, chart: false, errors: [] };
  }
  if (cell.cell_type !== "code") {
    return {
      kind: "raw",
      html: section("raw-cell", `<pre>${escapeHtml(source)}</pre>`),
      anchor,
      chart: false,
      errors: [],
    };
  }
  const outputs = renderOutputs(cell.outputs);
  const timing = cellTiming(cell.metadata);
  const count = typeof cell.execution_count === "number" ? String(cell.execution_count) : " ";
  const head = [`<a class="prompt" href="#${escapeHtml(anchor)}">[${count}]</a>`];
  if (timing) {
    const title = timing.started ? ` title="started ${escapeHtml(timing.started)}"` : "";
    head.push(`<span class="timing"${title}>${formatSeconds(timing.seconds)}</span>`);
  }
  const body = [
    `<div class="cell-head">${head.join(" ")}</div>`,
    `<pre class="source"><code>${escapeHtml(source)}</code></pre>`,
    outputs.html && `<div class="outputs">\n${outputs.html}\n</div>`,
  ];
  const html = section(outputs.errors.length > 0 ? "code-cell failed" : "code-cell", body.filter(Boolean).join("\n"));
  return { kind: "code", html, anchor, chart: outputs.chart, errors: outputs.errors, timing };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
