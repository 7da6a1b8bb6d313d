/** The traces the library's charts use, placed in axis units and drawn: scatter (lines,
 * markers, gaps where a value is missing) and vertical bars (grouped, overlaid or stacked). */
import { type Axis, type Box, coord, extend, toPx } from "./axes.ts";
import { num, type Obj, obj, str, type Trace } from "./figure-model.ts";
import { el, px } from "./svg-text.ts";

export interface Point {
  x: number;
  y: number;
}

export interface ScatterMarks {
  kind: "scatter";
  trace: Trace;
  x: Axis;
  y: Axis;
  /** null: a gap (a missing or non-finite value), unless the trace connects gaps. */
  points: (Point | null)[];
  lines: boolean;
  markers: boolean;
}

export interface BarRect {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
  color: string;
}

export interface BarMarks {
  kind: "bar";
  trace: Trace;
  x: Axis;
  y: Axis;
  rects: BarRect[];
}

export type Marks = ScatterMarks | BarMarks;

export function scatterMarks(trace: Trace, x: Axis, y: Axis): ScatterMarks {
  const n = Math.min(trace.xs.length, trace.ys.length);
  const points: (Point | null)[] = [];
  for (let i = 0; i < n; i++) {
    const px = coord(x, trace.xs[i]);
    const py = coord(y, trace.ys[i]);
    if (px === null || py === null) {
      if (trace.raw.connectgaps !== true) points.push(null);
      continue;
    }
    points.push({ x: px, y: py });
    extend(x, px);
    extend(y, py);
  }
  // plotly's default mode: markers too on short traces.
  const mode = str(trace.raw.mode) ?? (n < 20 ? "lines+markers" : "lines");
  return { kind: "scatter", trace, x, y, points, lines: mode.includes("lines"), markers: mode.includes("markers") };
}

/** Bars of every bar trace of one subplot (they share slots: grouped side by side, overlaid or stacked). */
export function barMarks(traces: readonly Trace[], x: Axis, y: Axis, layout: Obj): BarMarks[] {
  const mode = str(layout.barmode) ?? "group";
  const gap = num(layout.bargap) ?? 0.2;
  const slot = slotWidth(traces, x);
  const groupWidth = slot * (1 - gap);
  const stackTop = new Map<number, { pos: number; neg: number }>();
  y.fromZero = true;
  return traces.map((trace, k) => {
    const marker = obj(trace.raw.marker);
    const colors = Array.isArray(marker.color) ? marker.color : undefined;
    const width = num(trace.raw.width) ?? (mode === "group" ? groupWidth / traces.length : groupWidth);
    const offset = num(trace.raw.offset);
    const rects: BarRect[] = [];
    const n = Math.min(trace.xs.length, trace.ys.length);
    for (let i = 0; i < n; i++) {
      const cx = coord(x, trace.xs[i]);
      const value = coord(y, trace.ys[i]);
      if (cx === null || value === null) continue;
      const x0 =
        offset !== undefined ? cx + offset : mode === "group" ? cx - groupWidth / 2 + k * width : cx - width / 2;
      let base = num(trace.raw.base) ?? 0;
      if (mode === "stack") {
        const top = stackTop.get(cx) ?? { pos: 0, neg: 0 };
        base = value >= 0 ? top.pos : top.neg;
        stackTop.set(cx, value >= 0 ? { ...top, pos: base + value } : { ...top, neg: base + value });
      }
      const rect = { x0, x1: x0 + width, y0: base, y1: base + value, color: str(colors?.[i]) ?? trace.color };
      rects.push(rect);
      extend(x, rect.x0);
      extend(x, rect.x1);
      extend(y, rect.y0);
      extend(y, rect.y1);
    }
    return { kind: "bar", trace, x, y, rects };
  });
}

/** The x distance one bar (or group of bars) may fill: 1 category, else the closest two x values. */
function slotWidth(traces: readonly Trace[], x: Axis): number {
  if (x.type === "category") return 1;
  const xs = [...new Set(traces.flatMap((t) => t.xs.map((v) => coord(x, v)).filter((v) => v !== null)))].sort(
    (a, b) => a - b,
  );
  let slot = Infinity;
  for (let i = 1; i < xs.length; i++) slot = Math.min(slot, xs[i]! - xs[i - 1]!);
  return Number.isFinite(slot) ? slot : 1;
}

const DASHES: Record<string, string> = {
  dot: "3,3",
  dash: "9,9",
  longdash: "15,15",
  dashdot: "9,3,3,3",
  longdashdot: "15,6,3,6",
};

export function dashArray(dash: unknown): string | undefined {
  return typeof dash === "string"
    ? (DASHES[dash] ?? (/^[\d.,\spx]+$/.test(dash) ? dash.replace(/px/g, "") : undefined))
    : undefined;
}

export function drawMarks(marks: Marks, box: Box, clip: string): string {
  return marks.kind === "bar" ? drawBars(marks, box, clip) : drawScatter(marks, box, clip);
}

function drawBars(m: BarMarks, box: Box, clip: string): string {
  const opacity = num(m.trace.raw.opacity);
  const rects = m.rects.map((r) => {
    const [xa, xb] = [toPx(m.x, box, r.x0), toPx(m.x, box, r.x1)];
    const [ya, yb] = [toPx(m.y, box, r.y0), toPx(m.y, box, r.y1)];
    const fill = r.color === m.trace.color ? undefined : r.color;
    return el("rect", {
      x: Math.min(xa, xb),
      y: Math.min(ya, yb),
      width: Math.abs(xb - xa),
      height: Math.abs(yb - ya),
      fill,
    });
  });
  return el("g", { class: "trace bars", fill: m.trace.color, opacity, "clip-path": `url(#${clip})` }, rects.join(""));
}

function drawScatter(m: ScatterMarks, box: Box, clip: string): string {
  const line = obj(m.trace.raw.line);
  const marker = obj(m.trace.raw.marker);
  const placed = m.points.map((p) => (p === null ? null : { x: toPx(m.x, box, p.x), y: toPx(m.y, box, p.y) }));
  const parts: string[] = [];
  if (m.lines) {
    const d = segments(placed)
      .map(
        (seg) =>
          `M${thin(seg)
            .map((p) => `${px(p.x)},${px(p.y)}`)
            .join("L")}`,
      )
      .join("");
    if (d !== "") {
      parts.push(
        el("path", {
          d,
          fill: "none",
          stroke: m.trace.color,
          "stroke-width": num(line.width) ?? 2,
          "stroke-dasharray": dashArray(line.dash),
          "stroke-linejoin": "round",
          "clip-path": `url(#${clip})`,
        }),
      );
    }
  }
  if (m.markers) {
    const r = (num(marker.size) ?? 6) / 2;
    const dots = placed.flatMap((p) => (p === null ? [] : [el("circle", { cx: p.x, cy: p.y, r })])).join("");
    parts.push(el("g", { fill: str(marker.color) ?? m.trace.color, opacity: num(marker.opacity) }, dots));
  }
  return el("g", { class: "trace scatter", opacity: num(m.trace.raw.opacity) }, parts.join(""));
}

/** Runs of points between gaps. */
function segments(points: (Point | null)[]): Point[][] {
  const runs: Point[][] = [[]];
  for (const p of points) {
    if (p === null) runs.push([]);
    else runs.at(-1)!.push(p);
  }
  return runs.filter((r) => r.length > 0);
}

/** At most four points per pixel column (the first, lowest, highest and last): the line looks
 * the same, spikes included, and a long run does not make a large image. */
function thin(points: Point[]): Point[] {
  if (points.length < 1000) return points;
  const out: Point[] = [];
  let bucket: Point[] = [];
  const flush = () => {
    if (bucket.length === 0) return;
    const low = bucket.reduce((a, b) => (b.y > a.y ? b : a));
    const high = bucket.reduce((a, b) => (b.y < a.y ? b : a));
    const keep = new Set([bucket[0]!, low, high, bucket.at(-1)!]);
    out.push(...bucket.filter((p) => keep.has(p)));
    bucket = [];
  };
  for (const p of points) {
    if (bucket.length > 0 && Math.round(p.x) !== Math.round(bucket[0]!.x)) flush();
    bucket.push(p);
  }
  flush();
  return out;
}
