/** Training and evaluation data: loading, validating, inspecting, deduplicating and splitting. */
export { loadGsm8k, loadMath500, Gsm8kProblem, Math500Problem } from "./benchmarks.ts";
export { dedupe, type DedupeOptions, type DedupeResult } from "./dedupe.ts";
export type { Distribution, Histogram } from "./distribution.ts";
export { DatasetError } from "./errors.ts";
export { loadDataset, type AnyDataset, type Dataset, type LoadDatasetOptions } from "./load.ts";
export { previewDataset, type PreviewableDataset } from "./preview.ts";
export { mulberry32, seededShuffle } from "../util/random.ts";
export {
  AlpacaRow,
  ChatRow,
  detectShape,
  Gsm8kRow,
  PreferenceRow,
  PromptCompletionRow,
  RlRow,
  ROLES,
  SHAPE_NAMES,
  SHAPES,
  type RowOf,
  type ShapeName,
} from "./shapes.ts";
export { splitDataset, type Split, type SplitFractions, type SplitOptions } from "./split.ts";
export { datasetStats, type DatasetStats, type DatasetStatsOptions, type FieldStats, type TokenEncoder } from "./stats.ts";
export type { DatasetRow, LoadedRows } from "./types.ts";
