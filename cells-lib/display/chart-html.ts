/** A plotly figure as HTML: a div and a script that draws it with the page's plotly.js. The div
 * holds the figure's static image until plotly.js replaces it, so a page that runs no scripts
 * or has no plotly.js (GitHub, nbconvert's HTML, an untrusted notebook) still shows the chart. */
import { Buffer } from "node:buffer";
import { randomUUID } from "node:crypto";
import { escapeHtml, scriptJson } from "./html.ts";
import { titleText } from "./svg/svg-text.ts";

/** How long a chart waits for plotly.js (defined by an earlier output's script) to appear. */
const WAIT_FOR_PLOTLY_MS = 30_000;

export interface FigureJson {
  data: unknown[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
  frames?: unknown[];
}

export interface ChartHtmlOptions {
  /** plotly.js itself: the HTML defines window.Plotly (unless the page has it already); without
   * it, the chart waits for an earlier output to have defined it. */
  plotlyJs?: string;
  /** The figure as a static SVG image, shown until (or unless) plotly.js draws the chart. */
  staticSvg?: string;
}

export function chartHtml(figure: FigureJson, options: ChartHtmlOptions = {}): string {
  const id = `thinkcells-chart-${randomUUID()}`;
  const height = typeof figure.layout?.height === "number" ? figure.layout.height : 450;
  const config = { responsive: true, displaylogo: false, ...figure.config };
  // An <img> with a data: URI, not inline <svg>: HTML sanitizers (JupyterLab's for untrusted
  // outputs) keep it, and the image's ids cannot clash with the page's.
  const still =
    options.staticSvg === undefined
      ? ""
      : `<img class="thinkcells-chart-static" alt="${escapeHtml(titleText(figure.layout?.title) ?? "chart")}" ` +
        `src="data:image/svg+xml;base64,${Buffer.from(options.staticSvg).toString("base64")}" style="max-width:100%;height:auto">`;
  const size = still ? "width:100%" : `width:100%;height:${height}px`;
  const parts = [`<div id="${id}" class="thinkcells-chart" style="${size}">${still}</div>`];
  if (options.plotlyJs !== undefined) {
    parts.push(`<script>if (!window.Plotly) {\n${scriptSafe(options.plotlyJs)}\n}</script>`);
  }
  parts.push(`<script>
(function () {
  var figure = ${scriptJson({ data: figure.data, layout: figure.layout ?? {}, config, frames: figure.frames })};
  var started = Date.now();
  function draw() {
    var div = document.getElementById(${scriptJson(id)});
    if (div && window.Plotly) {
      div.textContent = "";
      div.style.height = "${height}px";
      window.Plotly.newPlot(div, figure).catch(function (e) { div.textContent = "Chart error: " + e; });
    } else if (Date.now() - started < ${WAIT_FOR_PLOTLY_MS}) {
      setTimeout(draw, 50);
    } else if (div) {
      var why = "plotly.js is not loaded in this page (the output that carried it is gone): call resetPlotly() and show the chart again.";
      var still = div.querySelector("img");
      if (still) still.title = "A static image of the chart. " + why;
      else div.textContent = why;
    }
  }
  draw();
})();
</script>`);
  return parts.join("\n");
}

/** "</script" inside the source would end the script element early; "<\/" means the same in
 * JavaScript strings and regular expressions. plotly.js 4.1.2 contains none, so its source
 * is inlined byte for byte. */
function scriptSafe(js: string): string {
  return js.replace(/<\/(script)/gi, "<\\/$1");
}
