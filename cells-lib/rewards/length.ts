/** Length: DAPO's soft overlong punishment as a reward. */

import { OverlongOptions, overlongPenalty } from "../rl/overlong.ts";
import type { RewardFn } from "../rl/rewards.ts";
import { parseOptions } from "../util/options.ts";

/** L_max (maxLength) and L_cache (cacheLength), in tokens, as for `overlongPenalty`. */
export type LengthRewardOptions = OverlongOptions;

/** 0 up to maxLength − cacheLength tokens, falling to −1 at maxLength, −1 beyond (see
 * `overlongPenalty`); the length is `ctx.completionIds.length`. */
export function lengthReward(options: LengthRewardOptions): RewardFn {
  // Checked here too, so a bad option fails when the reward is made, not at the first sample.
  const o = parseOptions(OverlongOptions, options, "lengthReward");
  return (ctx) => overlongPenalty(ctx.completionIds.length, o);
}
