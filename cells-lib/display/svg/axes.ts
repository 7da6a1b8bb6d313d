/** The figure's axes as plotly lays them out: their type (linear, log or category), data range,
 * place on the page (domain, grid subplots) and how each is drawn (grid lines, tick labels, title). */
import { num, type Obj, obj, str, type Trace } from "./figure-model.ts";
import { el, text, textWidth, titleText } from "./svg-text.ts";
import { niceTicks, tickLabel } from "./ticks.ts";

export interface Axis {
  /** "x", "x2", "y", … as traces name them. */
  id: string;
  letter: "x" | "y";
  layout: Obj;
  type: "linear" | "log" | "category";
  categories: string[];
  visible: boolean;
  title?: string;
  /** The data seen on this axis so far, in axis units (category index, log10 of a log axis's values). */
  lo: number;
  hi: number;
  range: [number, number];
  /** Where the axis lies across the plot area, as fractions (plotly's paper coordinates). */
  domain: [number, number];
  /** The perpendicular axis it is drawn against ("y" for "x"). */
  anchor: string;
  /** Bars grow from zero on it: its range is not padded past zero. */
  fromZero: boolean;
}

/** The plot area: the page inside the margins. Paper coordinates 0–1 span it. */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** "x2" → "xaxis2", the layout key of its settings. */
export function axisKey(id: string): string {
  return id.replace(/^([xy])/, "$1axis");
}

/** Every axis the traces use or the layout (or a shape, annotation) names. */
export function readAxes(layout: Obj, traces: readonly Trace[], refs: readonly string[]): Map<string, Axis> {
  const ids = new Set<string>();
  for (const t of traces) ids.add(t.xaxis).add(t.yaxis);
  for (const key of Object.keys(layout)) {
    const m = /^([xy])axis(\d*)$/.exec(key);
    if (m) ids.add(`${m[1]}${m[2]}`);
  }
  for (const ref of refs) if (/^[xy]\d*$/.test(ref)) ids.add(ref);
  const axes = new Map<string, Axis>();
  for (const id of ids) {
    const letter = id[0] as "x" | "y";
    const settings = obj(layout[axisKey(id)]);
    const values = traces.flatMap((t) =>
      (letter === "x" ? t.xaxis : t.yaxis) === id ? (letter === "x" ? t.xs : t.ys) : [],
    );
    const declared = str(settings.type);
    const categorical = values.some((v) => typeof v === "string" && !Number.isFinite(Number(v)));
    const type =
      declared === "log" || declared === "category" ? declared : !declared && categorical ? "category" : "linear";
    const axis: Axis = {
      id,
      letter,
      layout: settings,
      type,
      categories:
        type === "category" ? [...new Set(values.filter((v) => v !== null && v !== undefined).map(String))] : [],
      visible: settings.visible !== false,
      lo: Infinity,
      hi: -Infinity,
      range: [0, 1],
      domain: [0, 1],
      anchor: str(settings.anchor) ?? anchorOf(id, traces),
      fromZero: false,
    };
    const title = titleText(settings.title);
    if (title) axis.title = title;
    axes.set(id, axis);
  }
  return axes;
}

/** The perpendicular axis a trace pairs it with, else the one with the same number. */
function anchorOf(id: string, traces: readonly Trace[]): string {
  const t = traces.find((tr) => tr.xaxis === id || tr.yaxis === id);
  if (t) return id.startsWith("x") ? t.yaxis : t.xaxis;
  return (id.startsWith("x") ? "y" : "x") + id.slice(1);
}

/** A data value in axis units, or null when it cannot be placed (a gap). */
export function coord(axis: Axis, value: unknown): number | null {
  if (axis.type === "category") {
    const i = value === null || value === undefined ? -1 : axis.categories.indexOf(String(value));
    return i < 0 ? null : i;
  }
  const x = typeof value === "number" ? value : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
  if (!Number.isFinite(x)) return null;
  if (axis.type === "log") return x > 0 ? Math.log10(x) : null;
  return x;
}

export function extend(axis: Axis | undefined, value: number | null): void {
  if (!axis || value === null || !Number.isFinite(value)) return;
  axis.lo = Math.min(axis.lo, value);
  axis.hi = Math.max(axis.hi, value);
}

/** The range: the layout's, else the data's (y padded by 5% on each side, as lines near the edge
 * read better, except below the zero that bars stand on). */
export function settleRange(axis: Axis): void {
  const given = axis.layout.range;
  if (Array.isArray(given) && num(given[0]) !== undefined && num(given[1]) !== undefined && given[0] !== given[1]) {
    axis.range = [given[0] as number, given[1] as number];
    return;
  }
  if (axis.type === "category" && axis.categories.length > 0) {
    axis.range = [Math.min(-0.5, axis.lo), Math.max(axis.categories.length - 0.5, axis.hi)];
    return;
  }
  let { lo, hi } = axis;
  if (!(lo <= hi)) [lo, hi] = [0, 1];
  if (lo === hi) {
    const d = Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - d, hi + d];
  } else if (axis.letter === "y") {
    const pad = (hi - lo) * 0.05;
    const [low, high] = [lo - pad, hi + pad];
    [lo, hi] = [axis.fromZero && lo === 0 ? 0 : low, axis.fromZero && hi === 0 ? 0 : high];
  }
  axis.range = [lo, hi];
}

/** Domains from the layout grid (pattern "independent": subplot k uses axes x{k}, y{k}) or the
 * axes' own `domain`. */
export function settleDomains(axes: Map<string, Axis>, layout: Obj): void {
  const grid = obj(layout.grid);
  const rows = num(grid.rows) ?? 1;
  const columns = num(grid.columns) ?? 1;
  const cellW = 1 / (columns + (columns - 1) * (num(grid.xgap) ?? 0.1));
  const cellH = 1 / (rows + (rows - 1) * (num(grid.ygap) ?? 0.1));
  const topDown = grid.roworder !== "bottom to top";
  for (const axis of axes.values()) {
    const own = axis.layout.domain;
    if (Array.isArray(own) && num(own[0]) !== undefined && num(own[1]) !== undefined) {
      axis.domain = [own[0] as number, own[1] as number];
      continue;
    }
    const k = Number(axis.id.slice(1) || "1") - 1;
    if (rows * columns <= 1 || k >= rows * columns) continue;
    const row = Math.floor(k / columns);
    const col = k % columns;
    if (axis.letter === "x") {
      const start = col * cellW * (1 + (num(grid.xgap) ?? 0.1));
      axis.domain = [start, start + cellW];
    } else {
      const fromBottom = (topDown ? rows - 1 - row : row) * cellH * (1 + (num(grid.ygap) ?? 0.1));
      axis.domain = [fromBottom, fromBottom + cellH];
    }
  }
}

/** Axis units → a pixel position on the page. */
export function toPx(axis: Axis, box: Box, value: number): number {
  const [r0, r1] = axis.range;
  const [d0, d1] = axis.domain;
  const f = d0 + (d1 - d0) * ((value - r0) / (r1 - r0));
  return axis.letter === "x" ? box.left + f * box.width : box.top + (1 - f) * box.height;
}

/** A fraction of the plot area (paper coordinates) → pixels. */
export function paperPx(letter: "x" | "y", box: Box, f: number): number {
  return letter === "x" ? box.left + f * box.width : box.top + (1 - f) * box.height;
}

/** Grid lines, zero line, tick labels and title of one axis, drawn across its anchor's span. */
export function drawAxis(axis: Axis, anchor: Axis | undefined, box: Box): string {
  if (!axis.visible) return "";
  const across = anchor?.domain ?? [0, 1];
  const [a0, a1] = axis.letter === "x" ? [paperPx("y", box, across[0]), paperPx("y", box, across[1])] : [0, 0];
  const [b0, b1] = axis.letter === "y" ? [paperPx("x", box, across[0]), paperPx("x", box, across[1])] : [0, 0];
  const parts: string[] = [];
  const ticks = tickPlan(axis, box);
  for (const t of ticks) {
    const p = toPx(axis, box, t.at);
    const zero = axis.type === "linear" && t.at === 0;
    const line = axis.letter === "x" ? { x1: p, x2: p, y1: a1, y2: a0 } : { x1: b0, x2: b1, y1: p, y2: p };
    if (t.grid) parts.push(el("line", { ...line, stroke: zero ? "#444" : "#eee", "stroke-width": 1 }));
    if (t.label === "") continue;
    parts.push(
      axis.letter === "x" ? text(p, a0 + 6, t.label, { baseline: "top" }) : text(b0 - 6, p, t.label, { anchor: "end" }),
    );
  }
  if (axis.title) {
    // Below the tick labels, or left of the widest one (turned to read upwards).
    const middle = paperPx(axis.letter, box, (axis.domain[0] + axis.domain[1]) / 2);
    const widest = Math.max(0, ...ticks.map((t) => textWidth(t.label)));
    parts.push(
      axis.letter === "x"
        ? text(middle, a0 + 26, axis.title, { size: 14, baseline: "top" })
        : text(b0 - widest - 18, middle, axis.title, { size: 14, rotate: -90, baseline: "bottom" }),
    );
  }
  return el("g", { class: `axis ${axis.id}` }, parts.join(""));
}

interface Tick {
  at: number;
  label: string;
  grid: boolean;
}

function tickPlan(axis: Axis, box: Box): Tick[] {
  const span = (axis.domain[1] - axis.domain[0]) * (axis.letter === "x" ? box.width : box.height);
  const [lo, hi] = [Math.min(...axis.range), Math.max(...axis.range)];
  if (axis.type === "category") {
    const shown = axis.categories.map((c, i) => ({ c, i })).filter(({ i }) => i >= lo && i <= hi);
    const room = axis.letter === "x" ? Math.max(...shown.map(({ c }) => textWidth(c)), 1) + 8 : 16;
    const every = Math.max(1, Math.ceil((shown.length * room) / Math.max(1, span)));
    return shown.map(({ c, i }) => ({ at: i, label: i % every === 0 ? c : "", grid: false }));
  }
  const target = Math.max(2, Math.min(10, Math.floor(span / (axis.letter === "x" ? 80 : 40))));
  if (axis.type === "log") {
    const powers = niceTicks(lo, hi, target).filter(Number.isInteger);
    const at = powers.length > 0 ? powers : niceTicks(lo, hi, target);
    return at.map((p) => ({ at: p, label: tickLabel(10 ** p, 10 ** Math.floor(p)), grid: true }));
  }
  const ticks = niceTicks(lo, hi, target);
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : Math.abs(ticks[0] ?? 1) || 1;
  return ticks.map((t) => ({ at: t, label: tickLabel(t, step), grid: true }));
}
