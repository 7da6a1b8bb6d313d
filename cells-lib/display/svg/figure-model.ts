/** A plotly figure's traces read loosely (the figure is plain JSON, checked only for its shape):
 * what the static image needs of each, with plotly.js's defaults filled in. */
import type { FigureJson } from "../chart-html.ts";

export type Obj = Record<string, unknown>;

export function obj(value: unknown): Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Obj) : {};
}

export function num(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

export function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** plotly.js's default colorway (d3's category10). */
const COLORWAY = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

export interface Trace {
  index: number;
  type: string;
  name: string;
  raw: Obj;
  xs: unknown[];
  ys: unknown[];
  /** Its axes: "x", "x2", …; "y", "y2", … */
  xaxis: string;
  yaxis: string;
  color: string;
  inLegend: boolean;
}

/** The visible traces (visible: false and "legendonly" are not drawn). */
export function readTraces(figure: FigureJson): Trace[] {
  const layout = obj(figure.layout);
  const colorway =
    Array.isArray(layout.colorway) && layout.colorway.length > 0 ? layout.colorway.map(String) : COLORWAY;
  return figure.data.flatMap((value, index): Trace[] => {
    const raw = obj(value);
    if (raw.visible === false || raw.visible === "legendonly") return [];
    const ys = Array.isArray(raw.y) ? raw.y : [];
    // Without x, plotly places point i at x0 + i·dx.
    const x0 = num(raw.x0) ?? 0;
    const dx = num(raw.dx) ?? 1;
    const xs = Array.isArray(raw.x) ? raw.x : ys.map((_, i) => x0 + i * dx);
    const line = obj(raw.line);
    const marker = obj(raw.marker);
    return [
      {
        index,
        type: str(raw.type) ?? "scatter",
        name: str(raw.name) ?? `trace ${index}`,
        raw,
        xs,
        ys,
        xaxis: str(raw.xaxis) ?? "x",
        yaxis: str(raw.yaxis) ?? "y",
        color: str(line.color) ?? str(marker.color) ?? colorway[index % colorway.length]!,
        inLegend: raw.showlegend !== false,
      },
    ];
  });
}
