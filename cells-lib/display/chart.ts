/** `chart(figure)`: a plotly figure for every front end (plotly MIME, HTML, a static SVG image, text). */
import { z } from "zod";
import { OptionsError, parseOptions } from "../util/options.ts";
import { chartHtml, type FigureJson } from "./chart-html.ts";
import { staticSvg } from "./chart-static.ts";
import { chartSummary } from "./chart-summary.ts";
import { isPlainObject, toPlainJson } from "./plain-json.ts";
import { currentRenderer } from "./renderer.ts";
import { figureSvg } from "./svg/figure-svg.ts";
import type { MimeBundle } from "./types.ts";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

const FigureSchema = z
  .object({
    data: z.array(z.record(z.string(), z.unknown(), "each trace must be an object"), "data must be an array of traces"),
    layout: z.record(z.string(), z.unknown(), "layout must be an object").optional(),
    config: z.record(z.string(), z.unknown(), "config must be an object").optional(),
    frames: z.array(z.record(z.string(), z.unknown(), "each frame must be an object")).optional(),
  })
  .strict();

/** A plotly figure: traces (`{ type: "scatter", x, y, name }`, …), layout and config as in
 * plotly.js. Typed arrays are accepted and sent as plain arrays. */
export interface Figure {
  data: readonly object[];
  layout?: object;
  config?: object;
  frames?: readonly object[];
}

/** The bundle for a figure, as `chart` displays it. */
export function chartBundle(figure: Figure): MimeBundle {
  const fig = checkFigure(figure);
  return figureBundle(fig, { staticImage: true, text: chartSummary(fig) });
}

/** The figure's static image (SVG), as chart outputs carry it: to save, or embed elsewhere. */
export function chartSvg(figure: Figure): string {
  return figureSvg(checkFigure(figure));
}

export function chart(figure: Figure): void {
  currentRenderer().display(chartBundle(figure));
}

function checkFigure(figure: unknown): FigureJson {
  if (!isPlainObject(figure)) {
    throw new OptionsError(
      `chart: the figure must be an object { data, layout?, config? }, got ${Array.isArray(figure) ? "an array" : typeof figure}`,
    );
  }
  return parseOptions(FigureSchema, toPlainJson(figure), "chart");
}

export interface FigureBundleOptions {
  /** Add the static SVG image (image/svg+xml, and inside the HTML until plotly.js draws). */
  staticImage: boolean;
  text: string;
}

/** A figure's outputs: plotly's own MIME type (front ends with the plotly extension), HTML that
 * draws it with plotly.js, its static image for viewers without scripts, and a text summary. */
export function figureBundle(fig: FigureJson, options: FigureBundleOptions): MimeBundle {
  const svg = options.staticImage ? staticSvg(fig) : undefined;
  const bundle: MimeBundle = {
    [PLOTLY_MIME]: fig,
    "text/html": chartHtml(fig, { staticSvg: svg }),
  };
  if (svg !== undefined) bundle["image/svg+xml"] = svg;
  bundle["text/plain"] = options.text;
  return bundle;
}
