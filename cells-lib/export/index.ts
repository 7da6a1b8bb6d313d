/** Exporting trained models: merged Hugging Face directories, model cards, ONNX and greedy
 * generation on onnxruntime-node. */
export {
  type CheckpointSource,
  cardFromMeta,
  type ExportCheckpointOptions,
  exportCheckpoint,
  readCheckpointDir,
} from "./checkpoint.ts";
export {
  DEFAULT_SHARD_BYTES,
  type ExportOptions,
  type ExportResult,
  exportModel,
  TOKENIZER_FILES,
} from "./export-model.ts";
export { cardTags, type ExportFacts, isHubId, ModelCardInfo, renderModelCard } from "./model-card.ts";
export { type OnnxCompletion, type OnnxGenerateOptions, onnxGenerate, onnxSession } from "./onnx.ts";
