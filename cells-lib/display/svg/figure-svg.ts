/** A plotly figure's state as a static SVG image, drawn in TypeScript in the kernel's process (no
 * browser: a Colab-style box may have none). Viewers that run no scripts (GitHub, nbconvert's
 * HTML, an untrusted notebook in JupyterLab) show this image where the live chart cannot draw.
 * It covers what the library's charts use: scatter lines and markers, bars (grouped, overlaid,
 * stacked), subplot grids, titles, axes with ticks, legends, shapes and annotations. Other trace
 * types are named in a note on the image instead of being drawn. */
import type { FigureJson } from "../chart-html.ts";
import { escapeHtml } from "../html.ts";
import { type Axis, type Box, drawAxis, readAxes, settleDomains, settleRange } from "./axes.ts";
import { num, obj, readTraces, type Trace } from "./figure-model.ts";
import { drawAnnotations, drawLegend, drawShapes, extendByShapes, layoutRefs, legendOf } from "./marks.ts";
import { el, text, titleText } from "./svg-text.ts";
import { barMarks, drawMarks, type Marks, scatterMarks } from "./traces.ts";

const DRAWN = new Set(["scatter", "scattergl", "bar"]);

/** Width when the layout sets none (plotly's own chart fills its container instead). */
export const STATIC_WIDTH = 900;

export function figureSvg(figure: FigureJson): string {
  const layout = obj(figure.layout);
  const width = num(layout.width) ?? STATIC_WIDTH;
  const height = num(layout.height) ?? 450;
  const traces = readTraces(figure);
  const drawn = traces.filter((t) => DRAWN.has(t.type) && t.raw.orientation !== "h");
  const skipped = traces.filter((t) => !drawn.includes(t));
  const axes = readAxes(layout, drawn, layoutRefs(layout));
  const marks = placeMarks(drawn, axes, layout);
  extendByShapes(layout, axes);
  for (const axis of axes.values()) settleRange(axis);
  settleDomains(axes, layout);

  const legend = legendOf(layout, marks);
  const margin = obj(layout.margin);
  const m = {
    l: num(margin.l) ?? 80,
    r: (num(margin.r) ?? 80) + (legend?.width ?? 0),
    t: num(margin.t) ?? 100,
    b: num(margin.b) ?? 80,
  };
  const box: Box = {
    left: m.l,
    top: m.t,
    width: Math.max(10, width - m.l - m.r),
    height: Math.max(10, height - m.t - m.b),
  };
  // Ids are global where the SVG is inlined in a page: a prefix from the figure keeps charts apart.
  const prefix = `tc${hash(JSON.stringify(figure))}`;
  const clips = new Map<string, string>();
  const clipFor = (mk: Marks) => {
    const key = `${mk.x.id} ${mk.y.id}`;
    if (!clips.has(key)) clips.set(key, `${prefix}-clip${clips.size}`);
    return clips.get(key)!;
  };
  const body = marks.map((mk) => drawMarks(mk, box, clipFor(mk))).join("");
  const clipDefs = [...clips].map(([key, id]) => {
    const [x, y] = key.split(" ").map((a) => axes.get(a)!) as [Axis, Axis];
    const rect = {
      x: box.left + x.domain[0] * box.width,
      y: box.top + (1 - y.domain[1]) * box.height,
      width: (x.domain[1] - x.domain[0]) * box.width,
      height: (y.domain[1] - y.domain[0]) * box.height,
    };
    return el("clipPath", { id }, el("rect", rect));
  });

  const title = titleText(layout.title);
  const parts = [
    title ? el("title", {}, escapeHtml(title)) : "",
    clipDefs.length ? el("defs", {}, clipDefs.join("")) : "",
    el("rect", { width, height, fill: "#fff" }),
    ...[...axes.values()].map((axis) => drawAxis(axis, axes.get(axis.anchor), box)),
    body,
    drawShapes(layout, axes, box),
    drawAnnotations(layout, axes, box),
    title ? text(width / 2, m.t / 2, title, { size: 17 }) : "",
    legend ? drawLegend(legend, box) : "",
    skipped.length ? text(8, height - 8, skippedNote(skipped), { anchor: "start", size: 11, baseline: "bottom" }) : "",
  ];
  return el(
    "svg",
    {
      xmlns: "http://www.w3.org/2000/svg",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      class: "thinkcells-static-chart",
    },
    parts.join(""),
  );
}

/** Marks in trace order (plotly's drawing order); the bars of one subplot share their slots. */
function placeMarks(traces: readonly Trace[], axes: Map<string, Axis>, layout: Record<string, unknown>): Marks[] {
  const bars = new Map<number, Marks>();
  const subplots = new Map<string, Trace[]>();
  for (const t of traces.filter((tr) => tr.type === "bar")) {
    const key = `${t.xaxis} ${t.yaxis}`;
    subplots.set(key, [...(subplots.get(key) ?? []), t]);
  }
  for (const group of subplots.values()) {
    const [first] = group;
    for (const mk of barMarks(group, axes.get(first!.xaxis)!, axes.get(first!.yaxis)!, layout))
      bars.set(mk.trace.index, mk);
  }
  return traces.map((t) => bars.get(t.index) ?? scatterMarks(t, axes.get(t.xaxis)!, axes.get(t.yaxis)!));
}

function skippedNote(traces: readonly Trace[]): string {
  const what = traces.map((t) => `${t.type}${t.raw.orientation === "h" ? " (horizontal)" : ""} "${t.name}"`);
  return `not drawn in this static image: ${what.join(", ")}`;
}

/** FNV-1a, as base 36. */
function hash(value: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}
