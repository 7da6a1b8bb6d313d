/** Exporting trained models: merged Hugging Face directories, model cards, ONNX and greedy
 * generation on onnxruntime-node. */
export { cardFromMeta, exportCheckpoint, readCheckpointDir, type CheckpointSource, type ExportCheckpointOptions } from "./checkpoint.ts";
export { DEFAULT_SHARD_BYTES, exportModel, TOKENIZER_FILES, type ExportOptions, type ExportResult } from "./export-model.ts";
export { cardTags, isHubId, ModelCardInfo, renderModelCard, type ExportFacts } from "./model-card.ts";
export { onnxGenerate, onnxSession, type OnnxCompletion, type OnnxGenerateOptions } from "./onnx.ts";
