/** thinkcells' display layer: rich outputs in Deno's and tslab's Jupyter kernels, text in a
 * terminal, recorded outputs in tests. */
export { chart, chartBundle, chartSvg, type Figure, PLOTLY_MIME } from "./chart.ts";
export { DenoKernelRenderer, findDenoJupyter } from "./deno-kernel.ts";
export { formatDuration, formatNumber } from "./format.ts";
export { type LiveChart, type LiveChartOptions, liveChart } from "./live-chart.ts";
export { type Progress, type ProgressOptions, progress } from "./progress.ts";
export { type ProgressSnapshot, progressEtaMs, progressLine, progressRate } from "./progress-line.ts";
export { type RecordedOutput, RecordingRenderer } from "./recording.ts";
export { currentRenderer, detectRenderer, setRenderer } from "./renderer.ts";
export { bundleFor, isMimeBundle, JUPYTER_DISPLAY, show } from "./show.ts";
export { type TableOptions, table, tableBundle } from "./table.ts";
export type { Row } from "./table-model.ts";
export { TerminalRenderer, type TerminalRendererOptions } from "./terminal.ts";
export { findTslab, TslabRenderer } from "./tslab-kernel.ts";
export type { DisplayOptions, MimeBundle, Renderer, Terminal, UpdateOptions } from "./types.ts";
