/** What the layout adds on top of the traces: shapes (lines, rectangles), annotations (text,
 * optionally with an arrow) and the legend. Positions follow plotly's references: an axis's data
 * ("x2"), its domain ("x2 domain") or the whole plot area ("paper"). */
import { type Axis, type Box, coord, extend, paperPx, toPx } from "./axes.ts";
import { num, type Obj, obj, str } from "./figure-model.ts";
import { el, text, textWidth } from "./svg-text.ts";
import { dashArray, type Marks } from "./traces.ts";

function list(value: unknown): Obj[] {
  return Array.isArray(value) ? value.map(obj) : [];
}

function refOf(item: Obj, letter: "x" | "y"): string {
  return str(item[`${letter}ref`]) ?? letter;
}

/** The axes the shapes and annotations place things on. */
export function layoutRefs(layout: Obj): string[] {
  const items = [...list(layout.shapes), ...list(layout.annotations)];
  return items.flatMap((item) => [refOf(item, "x"), refOf(item, "y")].map((ref) => ref.replace(/ domain$/, "")));
}

/** plotly's autorange takes shapes placed on data into account (a marker line at x = 512). */
export function extendByShapes(layout: Obj, axes: Map<string, Axis>): void {
  for (const shape of list(layout.shapes)) {
    for (const letter of ["x", "y"] as const) {
      const axis = axes.get(refOf(shape, letter));
      if (!axis) continue;
      extend(axis, coord(axis, shape[`${letter}0`]));
      extend(axis, coord(axis, shape[`${letter}1`]));
    }
  }
}

function position(
  letter: "x" | "y",
  ref: string,
  value: unknown,
  axes: Map<string, Axis>,
  box: Box,
): number | undefined {
  if (ref === "paper") return num(value) === undefined ? undefined : paperPx(letter, box, value as number);
  const m = /^([xy]\d*)( domain)?$/.exec(ref);
  const axis = m ? axes.get(m[1]!) : undefined;
  if (!axis) return undefined;
  if (m![2]) {
    const f = num(value);
    return f === undefined ? undefined : paperPx(letter, box, axis.domain[0] + f * (axis.domain[1] - axis.domain[0]));
  }
  const c = coord(axis, value);
  return c === null ? undefined : toPx(axis, box, c);
}

export function drawShapes(layout: Obj, axes: Map<string, Axis>, box: Box): string {
  return list(layout.shapes)
    .map((shape) => {
      const at = (letter: "x" | "y", end: 0 | 1) =>
        position(letter, refOf(shape, letter), shape[`${letter}${end}`], axes, box);
      const [x0, x1, y0, y1] = [at("x", 0), at("x", 1), at("y", 0), at("y", 1)];
      if (x0 === undefined || x1 === undefined || y0 === undefined || y1 === undefined) return "";
      const line = obj(shape.line);
      const stroke = {
        stroke: str(line.color) ?? "#444",
        "stroke-width": num(line.width) ?? 2,
        "stroke-dasharray": dashArray(line.dash),
        opacity: num(shape.opacity),
      };
      if (shape.type === "rect") {
        const box = { x: Math.min(x0, x1), y: Math.min(y0, y1), width: Math.abs(x1 - x0), height: Math.abs(y1 - y0) };
        return el("rect", { ...box, ...stroke, fill: str(shape.fillcolor) ?? "none" });
      }
      if (shape.type === "circle") {
        const c = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, rx: Math.abs(x1 - x0) / 2, ry: Math.abs(y1 - y0) / 2 };
        return el("ellipse", { ...c, ...stroke, fill: str(shape.fillcolor) ?? "none" });
      }
      return el("line", { x1: x0, y1: y0, x2: x1, y2: y1, ...stroke });
    })
    .join("");
}

export function drawAnnotations(layout: Obj, axes: Map<string, Axis>, box: Box): string {
  return list(layout.annotations)
    .map((note) => {
      const x = position("x", refOf(note, "x"), note.x, axes, box);
      const y = position("y", refOf(note, "y"), note.y, axes, box);
      const value = str(note.text) ?? "";
      if (x === undefined || y === undefined || value === "") return "";
      const size = num(obj(note.font).size) ?? 12;
      const arrow = note.showarrow !== false;
      // With an arrow, the text sits at an offset (ax, ay) in pixels and the arrow points at (x, y).
      const [tx, ty] = arrow ? [x + (num(note.ax) ?? -10), y + (num(note.ay) ?? -30)] : [x, y];
      const anchor = { left: "start", right: "end" }[str(note.xanchor) ?? ""] as "start" | "end" | undefined;
      const baseline = { top: "top", bottom: "bottom" }[str(note.yanchor) ?? ""] as "top" | "bottom" | undefined;
      const label = text(tx, ty, value, { size, anchor: anchor ?? "middle", baseline: baseline ?? "middle" });
      return arrow ? el("line", { x1: x, y1: y, x2: tx, y2: ty, stroke: "#444", "stroke-width": 1 }) + label : label;
    })
    .join("");
}

export interface Legend {
  entries: Marks[];
  width: number;
}

/** Shown as plotly shows it: when the layout says so, else when more than one trace has a name to show. */
export function legendOf(layout: Obj, marks: readonly Marks[]): Legend | undefined {
  const entries = marks.filter((m) => m.trace.inLegend);
  const shown = typeof layout.showlegend === "boolean" ? layout.showlegend : entries.length > 1;
  if (!shown || entries.length === 0) return undefined;
  return { entries, width: 50 + Math.max(...entries.map((m) => textWidth(m.trace.name))) };
}

/** The legend to the right of the plot area, one row per trace: its symbol and name. */
export function drawLegend(legend: Legend, box: Box): string {
  const x = box.left + box.width + 16;
  const rows = legend.entries.map((m, i) => {
    const y = box.top + 10 + i * 20;
    const color = m.trace.color;
    let symbol: string;
    if (m.kind === "bar")
      symbol = el("rect", { x, y: y - 6, width: 20, height: 12, fill: color, opacity: num(m.trace.raw.opacity) });
    else if (m.lines) symbol = el("line", { x1: x, y1: y, x2: x + 20, y2: y, stroke: color, "stroke-width": 2 });
    else symbol = el("circle", { cx: x + 10, cy: y, r: 3, fill: color });
    return symbol + text(x + 26, y, m.trace.name, { anchor: "start" });
  });
  return el("g", { class: "legend" }, rows.join(""));
}
