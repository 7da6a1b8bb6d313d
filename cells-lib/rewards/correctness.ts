/** Correctness: does the completion's final answer match the reference? */
import { z } from "zod";
import { answersMatch } from "../reasoning/index.ts";
import type { RewardFn } from "../rl/rewards.ts";
import { parseOptions } from "../util/options.ts";
import { finalAnswer } from "./answer.ts";

const CorrectnessOptions = z
  .object({
    /** Reads the answer out of a completion; null when there is none. Default `finalAnswer`. */
    extract: z
      .custom<(completion: string) => string | null>(
        (v) => typeof v === "function",
        "extract must be a function (completion) => string | null",
      )
      .default(() => finalAnswer),
  })
  .strict();
export type CorrectnessOptions = z.input<typeof CorrectnessOptions>;

/** 1 when the extracted answer matches `ctx.reference` (numerically when both are numbers, see
 * `answersMatch`), 0 when it does not or there is no answer; null without a reference. */
export function correctnessReward(options?: CorrectnessOptions): RewardFn {
  const { extract } = parseOptions(CorrectnessOptions, options, "correctnessReward");
  return (ctx) => {
    if (ctx.reference === undefined || !ctx.reference.trim()) return null;
    return answersMatch(extract(ctx.completion), ctx.reference) ? 1 : 0;
  };
}
