/** What the JupyterLab browser test reads in the page: functions for page.evaluate (they run in
 * the browser) and the kernel traffic the page receives. */
import type { Page } from "playwright-core";

// What the page functions below touch of the DOM (the project compiles without the DOM lib).
export interface Box {
  width: number;
  height: number;
}
export interface El {
  readonly textContent: string | null;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  closest(selector: string): El | null;
  getAttribute(name: string): string | null;
  getBoundingClientRect(): Box;
  scrollIntoView(options?: object): void;
}
export interface PlotlyDiv extends El {
  /** Plotly.newPlot keeps the figure's traces on its div. */
  data?: { x?: unknown }[];
}
export interface Img extends El {
  complete: boolean;
  naturalWidth: number;
  naturalHeight: number;
  src: string;
}

export interface GrpoView {
  /** Chart outputs in the GRPO cell: one, redrawn in place. */
  charts: number;
  /** plotly.js drew it (the div is a plotly graph) rather than leaving the static image. */
  plotted: boolean;
  /** Points of the longest trace plotly holds (the steps drawn so far). */
  points: number;
  progressBars: number;
  progress: string | null;
  tables: { caption: string; rows: number }[];
}

export interface PageState {
  /** The code cells' prompts: "[ ]:", "[*]:", "[3]:". */
  prompts: string[];
  status: string;
  grpo: GrpoView;
}

/** Runs in the page (page.evaluate): no closures and no named inner functions, which the test's
 * transpiler would wrap in a helper the page does not have. */
export function readPage(grpoCell: number): PageState {
  const doc = (globalThis as unknown as { document: El }).document;
  const prompts = Array.from(doc.querySelectorAll(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")).map((p) =>
    (p.textContent ?? "").trim(),
  );
  const cell = doc.querySelectorAll(".jp-Notebook .jp-Cell")[grpoCell];
  const charts = cell ? Array.from(cell.querySelectorAll(".jp-OutputArea .thinkcells-chart")) : [];
  const chart = charts[0] as PlotlyDiv | undefined;
  const plotted = chart !== undefined && (chart.getAttribute("class") ?? "").includes("js-plotly-plot");
  const points = plotted ? Math.max(0, ...(chart?.data ?? []).map((t) => (Array.isArray(t.x) ? t.x.length : 0))) : 0;
  const bar = cell?.querySelector(".thinkcells-progress") ?? null;
  const tables = cell ? Array.from(cell.querySelectorAll("table.thinkcells-table")) : [];
  return {
    prompts,
    status: doc.querySelector("#jp-main-statusbar")?.textContent ?? "",
    grpo: {
      charts: charts.length,
      plotted,
      points,
      progressBars: cell ? cell.querySelectorAll(".thinkcells-progress").length : 0,
      progress: bar ? (bar.textContent ?? "").replace(/\s+/g, " ").trim() : null,
      tables: tables.map((t) => ({
        caption: t.querySelector("caption")?.textContent ?? "",
        rows: t.querySelectorAll("tbody tr").length,
      })),
    },
  };
}

/** What a recorder saw, in order: the GRPO chart's length and the bar's count at each change. */
export interface Recorded {
  points: number[];
  bar: number[];
}

/** Starts sampling the chart and progress bar of cell `index` every 50 ms inside the page, so
 * every redraw (at most 2 a second) is seen however slowly the test polls. Read with `recorded`. */
export function startRecorder(index: number): void {
  const page = globalThis as unknown as { document: El; thinkcellsRecorded?: Recorded };
  const seen: Recorded = { points: [], bar: [] };
  page.thinkcellsRecorded = seen;
  setInterval(() => {
    const cell = page.document.querySelectorAll(".jp-Notebook .jp-Cell")[index];
    const chart = cell?.querySelector(".jp-OutputArea .thinkcells-chart.js-plotly-plot") as
      | PlotlyDiv
      | null
      | undefined;
    if (chart) {
      const points = Math.max(0, ...(chart.data ?? []).map((t) => (Array.isArray(t.x) ? t.x.length : 0)));
      if (points !== seen.points[seen.points.length - 1]) seen.points.push(points);
    }
    const count = /(\d+)\s*\/\s*\d+/.exec(cell?.querySelector(".thinkcells-progress")?.textContent ?? "")?.[1];
    if (count !== undefined && Number(count) !== seen.bar[seen.bar.length - 1]) seen.bar.push(Number(count));
  }, 50);
}

export function recorded(): Recorded {
  return (globalThis as unknown as { thinkcellsRecorded?: Recorded }).thinkcellsRecorded ?? { points: [], bar: [] };
}

export function scrollToCell(index: number): void {
  const doc = (globalThis as unknown as { document: El }).document;
  doc.querySelectorAll(".jp-Notebook .jp-Cell")[index]?.scrollIntoView({ block: "start" });
}

/** What cellText reads of a cell: its text outputs (errors, streams), or its editor's source as
 * CodeMirror shows it (one .cm-line a line). */
export const OUTPUT_TEXT = ".jp-RenderedText";
export const EDITOR_LINES = ".cm-content .cm-line";

/** The text of the elements matching `selector` in cell `index`, a line each. */
export function cellText({ index, selector }: { index: number; selector: string }): string {
  const doc = (globalThis as unknown as { document: El }).document;
  const cell = doc.querySelectorAll(".jp-Notebook .jp-Cell")[index];
  return cell
    ? Array.from(cell.querySelectorAll(selector))
        .map((t) => t.textContent ?? "")
        .join("\n")
    : "";
}

export interface ChartImage {
  cell: number;
  /** plotly.js drew the chart. */
  plotted: boolean;
  /** The static image: its source kind and decoded and laid-out sizes. */
  image?: { src: string; complete: boolean; natural: Box; shown: Box };
}

/** Every chart output in the notebook (thinkcells' HTML, or a bare SVG output) and how it shows. */
export function readCharts(): ChartImage[] {
  const doc = (globalThis as unknown as { document: El }).document;
  const cells = Array.from(doc.querySelectorAll(".jp-Notebook .jp-Cell"));
  return Array.from(doc.querySelectorAll(".jp-Notebook .thinkcells-chart, .jp-Notebook .jp-RenderedSVG")).map(
    (chart) => {
      const img = (chart.querySelector("img.thinkcells-chart-static") ?? chart.querySelector("img")) as Img | null;
      const plot = chart.querySelector(".main-svg");
      const out: ChartImage = {
        cell: cells.indexOf(chart.closest(".jp-Cell") as El),
        plotted:
          (chart.getAttribute("class") ?? "").includes("js-plotly-plot") &&
          plot !== null &&
          plot.getBoundingClientRect().width > 0,
      };
      if (img) {
        const box = img.getBoundingClientRect();
        out.image = {
          src: img.src.slice(0, 26),
          complete: img.complete,
          natural: { width: img.naturalWidth, height: img.naturalHeight },
          shown: { width: box.width, height: box.height },
        };
      }
      return out;
    },
  );
}

/** "7/24" in a progress bar's text → 7. */
export function progressCount(text: string | null): number | undefined {
  const m = text ? /(\d+)\s*\/\s*(\d+)/.exec(text) : null;
  return m ? Number(m[1]) : undefined;
}

/** Kernel iopub traffic as the browser received it over the websocket. */
export interface Traffic {
  /** update_display_data messages for live charts, by display id. */
  liveUpdates: Map<string, number>;
  /** The largest frame, in characters (charts carry a loader, never plotly.js's ~4.8 MB). */
  largestFrame: number;
  /** The kernel's execution states, in order, each change once ("busy", "idle"; a kernel that
   * died or restarted shows "dead", "restarting" or "autorestarting"). */
  states: string[];
}

export function watchKernelTraffic(page: Page): Traffic {
  const traffic: Traffic = { liveUpdates: new Map(), largestFrame: 0, states: [] };
  page.on("websocket", (ws) => {
    if (!ws.url().includes("/api/kernels/")) return;
    ws.on("framereceived", ({ payload }) => {
      const text = typeof payload === "string" ? payload : payload.toString("latin1");
      traffic.largestFrame = Math.max(traffic.largestFrame, text.length);
      const state = /"execution_state":\s*"(\w+)"/.exec(text)?.[1];
      if (state && state !== traffic.states.at(-1)) traffic.states.push(state);
      if (!/"msg_type":\s*"update_display_data"/.test(text)) return;
      const id = /"display_id":\s*"(thinkcells-live-[\w-]+)"/.exec(text)?.[1];
      if (id) traffic.liveUpdates.set(id, (traffic.liveUpdates.get(id) ?? 0) + 1);
    });
  });
  return traffic;
}
