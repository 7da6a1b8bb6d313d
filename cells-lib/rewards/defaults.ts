/** The seed recipe's reward set, ready for `combineRewards`. */
import { z } from "zod";
import { REASONING_STYLES } from "../reasoning/index.ts";
import type { RewardSpec } from "../rl/rewards.ts";
import { parseOptions } from "../util/options.ts";
import { consistencyReward } from "./consistency.ts";
import { correctnessReward } from "./correctness.ts";
import { formatReward } from "./format.ts";
import { lengthReward } from "./length.ts";
import { processReward } from "./process.ts";

/** The seed recipe's weights for the built-in rewards. */
export const DEFAULT_REWARD_WEIGHTS = Object.freeze({
  correctness: 0.4,
  format: 0.2,
  consistency: 0.2,
  length: 0.1,
  process: 0.1,
});
export type DefaultRewardName = keyof typeof DEFAULT_REWARD_WEIGHTS;

const Weight = z.number().finite().optional();

const DefaultRewardsOptions = z
  .object({
    /** The reasoning style the format reward asks for. */
    style: z.enum(REASONING_STYLES).default("think"),
    /** For the length reward (see `lengthReward`). */
    maxLength: z.number().int().positive(),
    cacheLength: z.number().int().positive(),
    /** Overrides of DEFAULT_REWARD_WEIGHTS, by reward name. */
    weights: z
      .object({ correctness: Weight, format: Weight, consistency: Weight, length: Weight, process: Weight })
      .strict()
      .default({}),
  })
  .strict();
export type DefaultRewardsOptions = z.input<typeof DefaultRewardsOptions>;

/** `{ correctness, format, consistency, length, process }`, each `{ fn, weight }`, weighted
 * 0.4 / 0.2 / 0.2 / 0.1 / 0.1 unless `weights` says otherwise:
 * `combineRewards(defaultRewards({ maxLength: 512, cacheLength: 128 }))`. */
export function defaultRewards(options: DefaultRewardsOptions): Record<DefaultRewardName, RewardSpec> {
  const o = parseOptions(DefaultRewardsOptions, options, "defaultRewards");
  const weight = (name: DefaultRewardName) => o.weights[name] ?? DEFAULT_REWARD_WEIGHTS[name];
  return {
    correctness: { fn: correctnessReward(), weight: weight("correctness") },
    format: { fn: formatReward({ style: o.style }), weight: weight("format") },
    consistency: { fn: consistencyReward(), weight: weight("consistency") },
    length: { fn: lengthReward({ maxLength: o.maxLength, cacheLength: o.cacheLength }), weight: weight("length") },
    process: { fn: processReward(), weight: weight("process") },
  };
}
