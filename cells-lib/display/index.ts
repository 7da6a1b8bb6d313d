/** thinkcells' display layer: rich outputs in Deno's and tslab's Jupyter kernels, text in a
 * terminal, recorded outputs in tests. */
export { chart, chartBundle, PLOTLY_MIME, type Figure } from "./chart.ts";
export { DenoKernelRenderer, findDenoJupyter } from "./deno-kernel.ts";
export { formatDuration, formatNumber } from "./format.ts";
export { liveChart, type LiveChart, type LiveChartOptions } from "./live-chart.ts";
export { resetPlotly } from "./plotly-source.ts";
export { progress, type Progress, type ProgressOptions } from "./progress.ts";
export { progressEtaMs, progressLine, progressRate, type ProgressSnapshot } from "./progress-line.ts";
export { RecordingRenderer, type RecordedOutput } from "./recording.ts";
export { currentRenderer, detectRenderer, setRenderer } from "./renderer.ts";
export { bundleFor, isMimeBundle, JUPYTER_DISPLAY, show } from "./show.ts";
export { table, tableBundle, type TableOptions } from "./table.ts";
export type { Row } from "./table-model.ts";
export { TerminalRenderer, type TerminalRendererOptions } from "./terminal.ts";
export { findTslab, TslabRenderer } from "./tslab-kernel.ts";
export type { DisplayOptions, MimeBundle, Renderer, Terminal, UpdateOptions } from "./types.ts";
