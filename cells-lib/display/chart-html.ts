/** A plotly figure as HTML: a div and a script that draws it with plotly.js, loaded by the page
 * itself: from the Jupyter server (thinkcells' server extension), else from a CDN with its
 * integrity checked. The div holds the figure's static image until plotly.js replaces it, so a
 * page that runs no scripts or cannot load plotly.js (GitHub, an offline nbconvert HTML file, an
 * untrusted notebook) still shows the chart. */
import { Buffer } from "node:buffer";
import { randomUUID } from "node:crypto";
import { escapeHtml, scriptJson } from "./html.ts";
import { plotlyCdn, SERVER_PLOTLY_PATH } from "./plotly-source.ts";
import { titleText } from "./svg/svg-text.ts";

export interface FigureJson {
  data: unknown[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
  frames?: unknown[];
}

export interface ChartHtmlOptions {
  /** The figure as a static SVG image, shown until (or unless) plotly.js draws the chart. */
  staticSvg?: string;
}

/** Loads plotly.js once per page (window.thinkcellsPlotly, a promise every chart shares): already
 * there, else from the Jupyter server the page came from (its page config names the base URL),
 * else from the CDN. */
let loader: string | undefined;

function loaderJs(): string {
  // The same for every chart: built once (a live chart rebuilds its HTML at every update).
  loader ??= `function thinkcellsPlotly() {
  if (window.thinkcellsPlotly) return window.thinkcellsPlotly;
  var sources = [];
  var page = document.getElementById("jupyter-config-data");
  try {
    if (page) sources.push({ src: JSON.parse(page.textContent).baseUrl + ${scriptJson(SERVER_PLOTLY_PATH)} });
  } catch (e) {}
  sources.push(${scriptJson(plotlyCdn())});
  window.thinkcellsPlotly = new Promise(function (resolve, reject) {
    (function next(i) {
      if (window.Plotly) return resolve(window.Plotly);
      if (i === sources.length) {
        return reject(new Error("plotly.js could not be loaded from " + sources.map(function (s) { return s.src; }).join(" or ")));
      }
      var script = document.createElement("script");
      script.src = sources[i].src;
      if (sources[i].integrity) { script.integrity = sources[i].integrity; script.crossOrigin = "anonymous"; }
      script.onload = script.onerror = function () { next(i + 1); };
      document.head.appendChild(script);
    })(0);
  });
  return window.thinkcellsPlotly;
}`.replace(/\n/g, "\n  ");
  return loader;
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
  return `<div id="${id}" class="thinkcells-chart" style="${size}">${still}</div>
<script>
(function () {
  var figure = ${scriptJson({ data: figure.data, layout: figure.layout ?? {}, config, frames: figure.frames })};
  ${loaderJs()}
  function chartDiv() { return document.getElementById(${scriptJson(id)}); }
  thinkcellsPlotly().then(
    function (Plotly) {
      var div = chartDiv();
      if (!div) return; // replaced meanwhile (a live chart's next update)
      div.textContent = "";
      div.style.height = "${height}px";
      Plotly.newPlot(div, figure).catch(function (e) { div.textContent = "Chart error: " + e; });
    },
    function (e) {
      var div = chartDiv();
      var still = div && div.querySelector("img");
      if (still) still.title = "A static image of the chart: " + e.message;
      else if (div) div.textContent = e.message;
    }
  );
})();
</script>`;
}
