/** One output's MIME bundle as HTML, using the richest type the report can show offline. */
import { escapeHtml } from "../cells-lib/display/html.ts";
import { imageDataUri } from "./html-image.ts";
import { renderMarkdown } from "./html-markdown.ts";
import { chartPlaceholder, PLOTLY_MIME } from "./html-plotly.ts";
import { mimeText, terminalText } from "./html-text.ts";

export interface RenderedBundle {
  html: string;
  /** A plotly chart: the page must carry plotly.js. */
  chart: boolean;
}

export function renderBundle(data: Record<string, unknown>): RenderedBundle {
  const chart = PLOTLY_MIME in data ? chartPlaceholder(data[PLOTLY_MIME]) : undefined;
  if (chart !== undefined) return { html: chart, chart: true };
  return { html: nonChartHtml(data), chart: false };
}

function nonChartHtml(data: Record<string, unknown>): string {
  // Our charts' text/html loads plotly.js by itself (and waits for an earlier chart's copy):
  // with a plotly figure in the bundle, even a malformed one, the plain-text summary is shown.
  const html = PLOTLY_MIME in data ? undefined : mimeText(data["text/html"]);
  if (html !== undefined) return `<div class="output-html">${html}</div>`;
  const markdown = mimeText(data["text/markdown"]);
  if (markdown !== undefined) return `<div class="output-markdown">${renderMarkdown(markdown)}</div>`;
  const image = imageDataUri(data);
  if (image !== undefined) return `<img class="output-image" alt="output image" src="${escapeHtml(image)}">`;
  const plain = mimeText(data["text/plain"]);
  if (plain !== undefined) return `<pre class="output-text">${escapeHtml(terminalText(plain))}</pre>`;
  if ("application/json" in data) {
    return `<pre class="output-text">${escapeHtml(JSON.stringify(data["application/json"], null, 2) ?? "")}</pre>`;
  }
  const types = Object.keys(data).join(", ") || "none";
  return `<p class="output-note">(an output the report cannot show; its types: ${escapeHtml(types)})</p>`;
}
