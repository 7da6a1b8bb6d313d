/** Evaluation: generate, score, compare. */
export { comparisonRows, compareEvaluations, evaluate, type EvalResult, type EvalRow, type EvaluatedCompletion, type EvaluateOptions } from "./evaluate.ts";
export { passAtK } from "./pass-at-k.ts";
export { scoreCompletion, type CompletionScore } from "./score.ts";
