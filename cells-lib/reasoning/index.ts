/** Reasoning formats, answers and reasoning datasets: the text side of training reasoning models. */
export { answersMatch, extractAnswer } from "./answer.ts";
export { classifyReasoningType, REASONING_TYPES, type ReasoningType } from "./classify.ts";
export { gsm8kCotDataset, toCotDataset, type CotExample, type CotOptions, type CotRow } from "./cot.ts";
export { gsm8kToCot } from "./gsm8k.ts";
export {
  checkFormat,
  convertReasoning,
  formatReasoning,
  parseReasoning,
  REASONING_STYLES,
  type FormatCheck,
  type FormatOptions,
  type ParsedReasoning,
  type ReasoningParts,
  type ReasoningStyle,
} from "./markers.ts";
export { normalizeAnswer, parseNumber } from "./normalize.ts";
export { formatExample, generateArithmetic, OPERATIONS, type ArithmeticOptions, type ArithmeticRow, type Operation } from "./synthetic.ts";
