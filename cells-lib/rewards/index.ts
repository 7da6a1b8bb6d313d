/** Built-in reward functions for reasoning models: factories that validate their options once
 * and return a `RewardFn` for `combineRewards`. */
export { finalAnswer } from "./answer.ts";
export { conclusions } from "./conclusion.ts";
export { consistencyReward } from "./consistency.ts";
export { correctnessReward, type CorrectnessOptions } from "./correctness.ts";
export { DEFAULT_REWARD_WEIGHTS, defaultRewards, type DefaultRewardName, type DefaultRewardsOptions } from "./defaults.ts";
export { findEquations, type Equation } from "./equations.ts";
export { formatReward, type FormatRewardOptions } from "./format.ts";
export { lengthReward, type LengthRewardOptions } from "./length.ts";
export { processReward } from "./process.ts";
