/** Evaluation: generate, score, compare. */
export {
  compareEvaluations,
  comparisonRows,
  type EvalResult,
  type EvalRow,
  type EvaluatedCompletion,
  type EvaluateOptions,
  evaluate,
} from "./evaluate.ts";
export { passAtK } from "./pass-at-k.ts";
export {
  type Judge,
  type PlaygroundComparison,
  type PlaygroundOptions,
  type PlaygroundResult,
  type PlaygroundRow,
  playground,
} from "./playground.ts";
export { type CompletionScore, scoreCompletion } from "./score.ts";
export { countWins, type JudgeFn, type Verdict, type WinCounts, type Winner, winRate } from "./win-rate.ts";
