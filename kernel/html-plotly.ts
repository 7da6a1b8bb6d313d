/** Plotly charts in the report: each chart is a div followed by its figure as a JSON data
 * block; plotly.js and one drawing script come once, at the end of the page, so the text shows
 * before the ~4.8 MB of plotly.js is parsed. */
import { z } from "zod";
import { scriptJson } from "../cells-lib/display/html.ts";
import { plotlySource } from "../cells-lib/display/plotly-source.ts";
import { scriptSafe } from "./html-text.ts";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

const Figure = z.object({
  data: z.array(z.unknown()),
  layout: z.record(z.string(), z.unknown()).optional(),
  config: z.record(z.string(), z.unknown()).optional(),
  frames: z.array(z.unknown()).optional(),
});

/** The chart's placeholder, or undefined when the value is not a plotly figure. */
export function chartPlaceholder(value: unknown): string | undefined {
  const parsed = Figure.safeParse(value);
  if (!parsed.success) return undefined;
  const { data, layout = {}, config, frames } = parsed.data;
  const height = typeof layout.height === "number" ? layout.height : 450;
  const figure = { data, layout, config: { responsive: true, displaylogo: false, ...config }, frames };
  // A data block is never executed, and scriptJson writes "<" as \u003c (still valid JSON), so
  // no string in the figure can end the element.
  return (
    `<div class="plotly-chart" style="height:${height}px"></div>` +
    `<script type="application/json" class="plotly-figure">${scriptJson(figure)}</script>`
  );
}

const DRAW = `
document.querySelectorAll("div.plotly-chart").forEach(function (div) {
  function fail(e) { div.textContent = "Chart error: " + e; }
  try {
    Plotly.newPlot(div, JSON.parse(div.nextElementSibling.textContent)).catch(fail);
  } catch (e) {
    fail(e);
  }
});`;

/** plotly.js and the script that draws every chart placeholder. */
export function plotlyScripts(): string {
  return `<script>${scriptSafe(plotlySource())}</script>\n<script>${DRAW}</script>`;
}
