/** How one completion is scored against its reference answer in evaluation. */

import { answersMatch, checkFormat, extractAnswer, type ReasoningStyle } from "../reasoning/index.ts";
import { finalAnswer } from "../rewards/answer.ts";

export interface CompletionScore {
  /** The final answer (from the answer section, as the correctness reward reads it) matches. */
  correct: boolean;
  /** The completion follows the reasoning format strictly (`checkFormat`). */
  formatOk: boolean;
  /** The reference answer is the completion's answer by the lenient reading (the last answer
   * anywhere in it), even if the format is broken. */
  partial: boolean;
  answer: string | null;
}

export function scoreCompletion(completion: string, reference: string, style: ReasoningStyle): CompletionScore {
  const answer = finalAnswer(completion);
  const correct = answersMatch(answer, reference);
  return {
    correct,
    formatOk: checkFormat(completion, style).ok,
    partial: correct || answersMatch(extractAnswer(completion), reference),
    answer,
  };
}
