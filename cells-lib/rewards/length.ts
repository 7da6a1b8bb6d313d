/** Length: DAPO's soft overlong punishment as a reward. */
import { z } from "zod";
import type { RewardFn } from "../rl/rewards.ts";
import { overlongPenalty } from "../rl/overlong.ts";
import { parseOptions } from "../util/options.ts";

const LengthRewardOptions = z
  .object({
    /** L_max, in tokens: longer completions get −1. */
    maxLength: z.number().int().positive(),
    /** L_cache: the penalty grows linearly from 0 to −1 over the last cacheLength tokens. */
    cacheLength: z.number().int().positive(),
  })
  .strict()
  .refine((o) => o.cacheLength <= o.maxLength, { message: "cacheLength must not exceed maxLength", path: ["cacheLength"] });
export type LengthRewardOptions = z.input<typeof LengthRewardOptions>;

/** 0 up to maxLength − cacheLength tokens, falling to −1 at maxLength, −1 beyond (see
 * `overlongPenalty`); the length is `ctx.completionIds.length`. */
export function lengthReward(options: LengthRewardOptions): RewardFn {
  // Checked here too, so a bad option fails when the reward is made, not at the first sample.
  const o = parseOptions(LengthRewardOptions, options, "lengthReward");
  return (ctx) => overlongPenalty(ctx.completionIds.length, o);
}
