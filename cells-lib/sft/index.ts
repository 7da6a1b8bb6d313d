/** Stage 1, the SFT cold start: templates, tokenization with assistant-only loss, packing, the
 * trainSft cell and its starting hyperparameters. */

export {
  BUILTIN_TEMPLATES,
  type ChatTemplate,
  resolveTemplate,
  TEMPLATE_NAMES,
  type TemplateName,
  templatesFor,
} from "../chat/templates.ts";
export {
  formatTruncationReport,
  type PromptOptions,
  type PromptRow,
  promptTokens,
  type SftExample,
  type SftRow,
  type TokenizedExample,
  type TokenizeOptions,
  type TruncationReport,
  tokenizeDataset,
  tokenizeExample,
} from "../chat/tokenize.ts";
export { recommendHyperparams, type SftHyperparams } from "./hyperparams.ts";
export {
  type PackableExample,
  type PackedExample,
  type PackOptions,
  type PackResult,
  packExamples,
} from "./packing.ts";
export {
  type SftDataRow,
  type SftEvaluation,
  type SftResult,
  type SftStepMetrics,
  type SftTrainer,
  sftTrainer,
  type TrainSftOptions,
  trainSft,
} from "./train-sft.ts";
