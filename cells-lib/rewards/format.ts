/** Format: is the completion written in the expected reasoning style? */
import { z } from "zod";
import { checkFormat, REASONING_STYLES, type ReasoningStyle } from "../reasoning/index.ts";
import type { RewardFn } from "../rl/rewards.ts";
import { parseOptions } from "../util/options.ts";

const FormatRewardOptions = z
  .object({
    style: z.enum(REASONING_STYLES).default("think"),
    /** The score of a completion that has every marker of the style but fails the strict
     * check (empty reasoning or answer, text around the blocks, duplicated tags). */
    partial: z.number().min(0).max(1).default(0),
  })
  .strict();
export type FormatRewardOptions = z.input<typeof FormatRewardOptions>;

const MARKERS: Record<ReasoningStyle, readonly string[]> = {
  think: ["<think>", "</think>"],
  thinking: ["<thinking>", "</thinking>"],
  reasoning_answer: ["<reasoning>", "</reasoning>", "<answer>", "</answer>"],
  boxed: ["\\boxed{"],
};

/** 1 when `checkFormat` passes for the style, `partial` when all the style's markers are there
 * but the check fails, else 0. */
export function formatReward(options?: FormatRewardOptions): RewardFn {
  const { style, partial } = parseOptions(FormatRewardOptions, options, "formatReward");
  return (ctx) => {
    if (checkFormat(ctx.completion, style).ok) return 1;
    return MARKERS[style].every((marker) => ctx.completion.includes(marker)) ? partial : 0;
  };
}
