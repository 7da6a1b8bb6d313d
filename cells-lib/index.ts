/** thinkcells: typed cells for training reasoning language models from TypeScript notebooks. */
import "./notebook-dir.ts";

export { BridgeClient, type BridgeOptions, findPython, type OpRequest, type OpResponse } from "./bridge/client.ts";
export { BridgeError, type BridgeErrorKind } from "./bridge/errors.ts";
export { Tensor } from "./bridge/frames.ts";
export { ERROR_KINDS, type ModelInfo, PROTOCOL_VERSION } from "./bridge/protocol.ts";
export { loadAdapter, type SaveAdapterOptions, type SaveAdapterResult, saveAdapter } from "./cells/adapter.ts";
export { convertLlama2c } from "./cells/convert.ts";
export { InterruptedError, type InterruptedRun, lastInterrupt } from "./cells/interrupt.ts";
export { attachModel, type BridgeStatus, loadModel, type Model, status } from "./cells/model.ts";
export { type Completion, logprobs, type Prompt, type SampleOptions, type StopReason, sample } from "./cells/sample.ts";
export { bridge, disconnect } from "./cells/session.ts";
export {
  addValueHead,
  applyLora,
  discardGradients,
  type ForwardBackwardResult,
  forward,
  forwardBackward,
  type LoraOptions,
  loadState,
  type OptimOptions,
  type OptimStepResult,
  optimStep,
  removeLora,
  resetOptimizer,
  saveState,
  setAdapters,
  type TrainingExample,
  type TrainingLoss,
  values,
} from "./cells/train.ts";
export * from "./checkpoints/index.ts";
export * from "./data/index.ts";
export * from "./display/index.ts";
export * from "./dpo/index.ts";
export * from "./eval/index.ts";
export * from "./export/index.ts";
export * from "./grpo/index.ts";
export * from "./hub/index.ts";
export * from "./reasoning/index.ts";
export * from "./rewards/index.ts";
export * from "./rl/index.ts";
export * from "./sft/index.ts";
export { llama2cTokenizer } from "./tokenizer/llama2c.ts";
export { type ChatMessage, loadTokenizer, Tokenizer } from "./tokenizer/tokenizer.ts";
export { type LrScheduleOptions, lrSchedule } from "./training/schedule.ts";
export { OptionsError } from "./util/options.ts";
