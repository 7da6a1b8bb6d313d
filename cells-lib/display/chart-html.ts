/** A plotly figure as HTML: a div and a script that draws it with the page's plotly.js. */
import { randomUUID } from "node:crypto";
import { scriptJson } from "./html.ts";

/** How long a chart waits for plotly.js (defined by an earlier output's script) to appear. */
const WAIT_FOR_PLOTLY_MS = 30_000;

export interface FigureJson {
  data: unknown[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
  frames?: unknown[];
}

/** With `plotlyJs`, the HTML defines window.Plotly (unless the page has it already); without,
 * it waits for an earlier output to have defined it. */
export function chartHtml(figure: FigureJson, plotlyJs?: string): string {
  const id = `thinkcells-chart-${randomUUID()}`;
  const height = typeof figure.layout?.height === "number" ? figure.layout.height : 450;
  const config = { responsive: true, displaylogo: false, ...figure.config };
  const parts = [`<div id="${id}" class="thinkcells-chart" style="width:100%;height:${height}px"></div>`];
  if (plotlyJs !== undefined) parts.push(`<script>if (!window.Plotly) {\n${scriptSafe(plotlyJs)}\n}</script>`);
  parts.push(`<script>
(function () {
  var figure = ${scriptJson({ data: figure.data, layout: figure.layout ?? {}, config, frames: figure.frames })};
  var started = Date.now();
  function draw() {
    var div = document.getElementById(${scriptJson(id)});
    if (div && window.Plotly) {
      window.Plotly.newPlot(div, figure).catch(function (e) { div.textContent = "Chart error: " + e; });
    } else if (Date.now() - started < ${WAIT_FOR_PLOTLY_MS}) {
      setTimeout(draw, 50);
    } else if (div) {
      div.textContent = "plotly.js is not loaded in this page (the output that carried it is gone): call resetPlotly() and show the chart again.";
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
