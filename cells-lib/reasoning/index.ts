/** Reasoning formats, answers and reasoning datasets: the text side of training reasoning models. */
export { answersMatch, extractAnswer } from "./answer.ts";
export { classifyReasoningType, REASONING_TYPES, type ReasoningType } from "./classify.ts";
export { type CotExample, type CotOptions, type CotRow, gsm8kCotDataset, toCotDataset } from "./cot.ts";
export { gsm8kToCot } from "./gsm8k.ts";
export {
  checkFormat,
  convertReasoning,
  type FormatCheck,
  type FormatOptions,
  formatReasoning,
  type ParsedReasoning,
  parseReasoning,
  REASONING_STYLES,
  type ReasoningParts,
  type ReasoningStyle,
} from "./markers.ts";
export { normalizeAnswer, parseNumber } from "./normalize.ts";
export {
  type ArithmeticOptions,
  type ArithmeticRow,
  formatExample,
  generateArithmetic,
  OPERATIONS,
  type Operation,
} from "./synthetic.ts";
