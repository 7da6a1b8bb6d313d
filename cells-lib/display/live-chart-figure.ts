/** The figure (and text) of a live chart: one line chart per metric that has had a finite value,
 * in a grid of subplots. */
import type { FigureJson } from "./chart-html.ts";
import { formatNumber } from "./format.ts";

export interface Series {
  steps: number[];
  /** null where a value was not finite (a NaN loss): a gap in the line. */
  values: (number | null)[];
}

export interface LiveFigureInput {
  title?: string;
  metrics: readonly string[];
  series: ReadonlyMap<string, Series>;
  columns?: number;
  /** Longer series are thinned (every k-th point, and always the last) because every update
   * resends the whole figure to the front end. */
  maxPoints: number;
}

const ROW_HEIGHT = 240;

function gridColumns(metrics: number): number {
  if (metrics <= 2) return metrics;
  return metrics <= 4 ? 2 : 3;
}

/** The metrics that get a panel, in the chart's order: those with at least one finite value. A
 * metric a run never produces (KL without a KL penalty, accuracy without a correctness reward)
 * would otherwise be an empty panel, or a line of gaps reported as NaN. */
export function shownMetrics(input: LiveFigureInput): string[] {
  return input.metrics.filter((metric) => input.series.get(metric)?.values.some((v) => v !== null));
}

export function liveFigure(input: LiveFigureInput): FigureJson {
  const metrics = shownMetrics(input);
  const margin = { t: input.title === undefined ? 40 : 80, l: 60, r: 20, b: 40 };
  const title = input.title === undefined ? {} : { title: { text: input.title } };
  if (metrics.length === 0) {
    const hidden = { visible: false };
    const waiting = { text: "no data yet", xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false };
    return {
      data: [],
      layout: { height: 80 + ROW_HEIGHT, margin, xaxis: hidden, yaxis: hidden, annotations: [waiting], ...title },
    };
  }
  const n = metrics.length;
  const columns = Math.min(n, input.columns ?? gridColumns(n));
  const rows = Math.ceil(n / columns);
  const layout: Record<string, unknown> = {
    height: 80 + rows * ROW_HEIGHT,
    margin,
    showlegend: false,
    hovermode: "x",
    grid: { rows, columns, pattern: "independent", roworder: "top to bottom", xgap: 0.15, ygap: 0.35 },
    annotations: metrics.map((metric, i) => ({
      // Subplot titles: plotly has none, so each is an annotation above its subplot.
      text: metric,
      xref: `${axis("x", i)} domain`,
      yref: `${axis("y", i)} domain`,
      x: 0.5,
      y: 1,
      xanchor: "center",
      yanchor: "bottom",
      showarrow: false,
    })),
    ...title,
  };
  const data = metrics.map((metric, i) => {
    const s = thin(input.series.get(metric)!, input.maxPoints);
    return {
      type: "scatter",
      mode: "lines",
      name: metric,
      x: s.steps,
      y: s.values,
      xaxis: axis("x", i),
      yaxis: axis("y", i),
    };
  });
  return { data, layout };
}

/** "x", "x2", "x3", …: plotly's names for the i-th subplot's axes. */
function axis(letter: "x" | "y", i: number): string {
  return i === 0 ? letter : `${letter}${i + 1}`;
}

function thin(series: Series, maxPoints: number): Series {
  const n = series.steps.length;
  if (n <= maxPoints) return series;
  const stride = Math.ceil(n / (maxPoints - 1));
  const keep: number[] = [];
  for (let i = 0; i < n - 1; i += stride) keep.push(i);
  keep.push(n - 1);
  return { steps: keep.map((i) => series.steps[i]!), values: keep.map((i) => series.values[i]!) };
}

/** Title, latest step, and per shown metric its point count and latest value. */
export function liveSummary(input: LiveFigureInput): string {
  const shown = shownMetrics(input).map((metric) => [metric, input.series.get(metric)!] as const);
  const lastStep = Math.max(-Infinity, ...shown.map(([, s]) => s.steps.at(-1)!));
  const head = `${input.title ?? "Live chart"}${shown.length ? `: step ${formatNumber(lastStep)}` : ": no data yet"}`;
  const lines = shown.map(([metric, s]) => {
    const n = s.steps.length;
    const last = s.values.at(-1)!;
    return `  ${metric}: ${n} point${n === 1 ? "" : "s"}, last ${last === null ? "NaN" : formatNumber(last)} at step ${formatNumber(s.steps.at(-1)!)}`;
  });
  return [head, ...lines].join("\n");
}
