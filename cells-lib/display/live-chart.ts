/** `liveChart`: training curves that redraw in place while a loop pushes metrics. */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { figureBundle } from "./chart.ts";
import { type LiveFigureInput, liveFigure, liveSummary, type Series } from "./live-chart-figure.ts";
import { currentRenderer } from "./renderer.ts";
import { Throttle } from "./throttle.ts";
import type { MimeBundle } from "./types.ts";

const LiveChartOptions = z
  .object({
    title: z.string().optional(),
    /** e.g. ["loss", "reward", "kl", "gradNorm", "lr", "tokensPerS", "completionLength"]: the
     * metrics that may be pushed, in panel order. A metric's panel appears with its first finite
     * value, so one a run never produces takes no room. */
    metrics: z
      .array(z.string().min(1, "metric names must not be empty"))
      .min(1, "give at least one metric name")
      .refine((m) => new Set(m).size === m.length, "metric names must be unique"),
    /** Redraw at most this often: each redraw resends the whole figure. */
    throttleMs: z.number().min(0).default(500),
    /** Subplots per row (default: 1–2 metrics side by side, 2 columns up to 4, then 3). */
    columns: z.number().int().min(1).optional(),
    /** Points drawn per metric; longer series are thinned for drawing. */
    maxPoints: z.number().int().min(2).default(1000),
    /** The static SVG image (for viewers without scripts, e.g. a saved notebook on GitHub) is
     * redrawn at most this often while the chart runs, and always by close(). */
    staticEveryMs: z.number().min(0).default(5000),
  })
  .strict();
export type LiveChartOptions = z.input<typeof LiveChartOptions>;

export interface LiveChart {
  readonly displayId: string;
  /** Records the metrics of one step. A metric may be left out (or undefined) at a step;
   * NaN and ±Infinity are drawn as gaps (and until a metric's first finite value, not at all). */
  push(step: number, values: Readonly<Record<string, number | undefined>>): void;
  /** Redraws now if a redraw is waiting for the throttle. */
  flush(): void;
  /** Draws the final state (always) and stops accepting points. */
  close(): void;
}

export function liveChart(options: LiveChartOptions): LiveChart {
  const o = parseOptions(LiveChartOptions, options, "liveChart");
  const renderer = currentRenderer(); // fixed: a chart's outputs all go to one place
  const displayId = `thinkcells-live-${randomUUID()}`;
  const series = new Map<string, Series>(o.metrics.map((m) => [m, { steps: [], values: [] }]));
  const input: LiveFigureInput = { metrics: o.metrics, series, maxPoints: o.maxPoints };
  if (o.title !== undefined) input.title = o.title;
  if (o.columns !== undefined) input.columns = o.columns;

  let staticAt = -Infinity;
  const bundle = (final: boolean) => {
    const withStatic = final || Date.now() - staticAt >= o.staticEveryMs;
    if (withStatic) staticAt = Date.now();
    return liveBundle(input, withStatic);
  };
  const throttle = new Throttle(o.throttleMs, () => renderer.update(bundle(false), { displayId, final: false }));
  renderer.display(bundle(false), { displayId });
  throttle.startInterval();
  let closed = false;

  return {
    displayId,
    push(step, values) {
      if (closed) throw new Error("liveChart: push() after close()");
      checkPoint(step, values, series);
      for (const [metric, value] of Object.entries(values)) {
        if (value === undefined) continue;
        const s = series.get(metric)!;
        s.steps.push(step);
        s.values.push(Number.isFinite(value) ? value : null);
      }
      throttle.request();
    },
    flush() {
      throttle.flush();
    },
    close() {
      if (closed) return;
      closed = true;
      throttle.cancel();
      renderer.update(bundle(true), { displayId, final: true });
    },
  };
}

function liveBundle(input: LiveFigureInput, staticImage: boolean): MimeBundle {
  return figureBundle(liveFigure(input), {
    staticImage,
    text: liveSummary(input),
  });
}

function checkPoint(step: number, values: unknown, series: ReadonlyMap<string, Series>): void {
  if (typeof step !== "number" || !Number.isFinite(step)) {
    throw new TypeError(`liveChart.push: step must be a finite number, got ${String(step)}`);
  }
  if (typeof values !== "object" || values === null || Array.isArray(values)) {
    throw new TypeError("liveChart.push: values must be an object of metric → number, e.g. { loss: 0.53 }");
  }
  for (const [metric, value] of Object.entries(values)) {
    if (!series.has(metric)) {
      throw new TypeError(
        `liveChart.push: unknown metric "${metric}"; this chart has ${[...series.keys()].map((m) => `"${m}"`).join(", ")}`,
      );
    }
    if (value !== undefined && typeof value !== "number") {
      throw new TypeError(`liveChart.push: metric "${metric}" must be a number, got ${typeof value}`);
    }
  }
}
