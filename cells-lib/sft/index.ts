/** Stage 1, the SFT cold start: templates, tokenization with assistant-only loss, packing, the
 * trainSft cell and its starting hyperparameters. */
export { recommendHyperparams, type SftHyperparams } from "./hyperparams.ts";
export { packExamples, type PackableExample, type PackedExample, type PackOptions, type PackResult } from "./packing.ts";
export { BUILTIN_TEMPLATES, resolveTemplate, TEMPLATE_NAMES, templatesFor, type ChatTemplate, type TemplateName } from "../chat/templates.ts";
export {
  formatTruncationReport,
  promptTokens,
  tokenizeDataset,
  tokenizeExample,
  type PromptOptions,
  type PromptRow,
  type SftExample,
  type SftRow,
  type TokenizedExample,
  type TokenizeOptions,
  type TruncationReport,
} from "../chat/tokenize.ts";
export { sftTrainer, trainSft, type SftDataRow, type SftEvaluation, type SftResult, type SftStepMetrics, type SftTrainer, type TrainSftOptions } from "./train-sft.ts";
