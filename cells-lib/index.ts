/** thinkcells: typed cells for training reasoning language models from TypeScript notebooks. */
import "./notebook-dir.ts";
export { BridgeClient, findPython, type BridgeOptions, type OpRequest, type OpResponse } from "./bridge/client.ts";
export { BridgeError, type BridgeErrorKind } from "./bridge/errors.ts";
export { Tensor } from "./bridge/frames.ts";
export { ERROR_KINDS, PROTOCOL_VERSION, type ModelInfo } from "./bridge/protocol.ts";
export { loadAdapter, saveAdapter, type SaveAdapterOptions, type SaveAdapterResult } from "./cells/adapter.ts";
export { convertLlama2c } from "./cells/convert.ts";
export { attachModel, loadModel, status, type BridgeStatus, type Model } from "./cells/model.ts";
export { logprobs, sample, type Completion, type Prompt, type SampleOptions, type StopReason } from "./cells/sample.ts";
export { bridge, disconnect } from "./cells/session.ts";
export {
  addValueHead,
  applyLora,
  forwardBackward,
  loadState,
  optimStep,
  removeLora,
  resetOptimizer,
  discardGradients,
  saveState,
  setAdapters,
  type ForwardBackwardResult,
  type LoraOptions,
  type OptimOptions,
  type OptimStepResult,
  type TrainingExample,
  type TrainingLoss,
  values,
} from "./cells/train.ts";
export { lrSchedule, type LrScheduleOptions } from "./training/schedule.ts";
export { llama2cTokenizer } from "./tokenizer/llama2c.ts";
export { loadTokenizer, Tokenizer, type ChatMessage } from "./tokenizer/tokenizer.ts";
export { OptionsError } from "./util/options.ts";
export * from "./display/index.ts";
export * from "./data/index.ts";
export * from "./rl/index.ts";
export * from "./reasoning/index.ts";
export * from "./rewards/index.ts";
export * from "./sft/index.ts";
export * from "./eval/index.ts";
export * from "./checkpoints/index.ts";
export * from "./grpo/index.ts";
export * from "./export/index.ts";
export * from "./hub/index.ts";
export * from "./dpo/index.ts";
