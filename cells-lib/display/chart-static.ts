/** The static image each chart output carries beside its live form (svg/figure-svg.ts). */
import type { FigureJson } from "./chart-html.ts";
import { reportDisplayError } from "./report.ts";
import { figureSvg } from "./svg/figure-svg.ts";

/** The figure as SVG, or undefined (and a message on stderr) when drawing it failed: the
 * interactive chart is still shown then, so a figure the static renderer trips on costs only
 * its image. */
export function staticSvg(figure: FigureJson): string | undefined {
  try {
    return figureSvg(figure);
  } catch (error) {
    reportDisplayError(
      new Error(`the chart's static image: ${error instanceof Error ? error.message : String(error)}`),
    );
    return undefined;
  }
}
