/** Consistency: does the final answer agree with what the reasoning concluded? Rewards a model
 * for answering what it worked out, right or wrong. */

import { answersMatch, parseReasoning } from "../reasoning/index.ts";
import type { RewardFn } from "../rl/rewards.ts";
import { finalAnswer } from "./answer.ts";
import { conclusions } from "./conclusion.ts";

/** null when the completion has no reasoning or its reasoning no numeric conclusion (see
 * `conclusions`); otherwise 1 when the final answer (see `finalAnswer`) matches a conclusion,
 * 0 when it does not or is missing. */
export function consistencyReward(): RewardFn {
  return (ctx) => {
    const { style, reasoning } = parseReasoning(ctx.completion);
    const candidates = style === null ? [] : conclusions(reasoning);
    if (candidates.length === 0) return null;
    const answer = finalAnswer(ctx.completion);
    return candidates.some((c) => answersMatch(answer, c)) ? 1 : 0;
  };
}
