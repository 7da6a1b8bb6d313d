/** Training and evaluation data: loading, validating, inspecting, deduplicating and splitting. */

export { mulberry32, seededShuffle } from "../util/random.ts";
export { Gsm8kProblem, loadGsm8k, loadMath500, Math500Problem } from "./benchmarks.ts";
export { type DedupeOptions, type DedupeResult, dedupe } from "./dedupe.ts";
export type { Distribution, Histogram } from "./distribution.ts";
export { DatasetError } from "./errors.ts";
export { type AnyDataset, type Dataset, type LoadDatasetOptions, loadDataset } from "./load.ts";
export { type PreviewableDataset, previewDataset } from "./preview.ts";
export {
  AlpacaRow,
  ChatRow,
  detectShape,
  Gsm8kRow,
  PreferenceRow,
  PromptCompletionRow,
  RlRow,
  ROLES,
  type RowOf,
  SHAPE_NAMES,
  SHAPES,
  type ShapeName,
} from "./shapes.ts";
export { type Split, type SplitFractions, type SplitOptions, splitDataset } from "./split.ts";
export {
  type DatasetStats,
  type DatasetStatsOptions,
  datasetStats,
  type FieldStats,
  type TokenEncoder,
} from "./stats.ts";
export type { DatasetRow, LoadedRows } from "./types.ts";
