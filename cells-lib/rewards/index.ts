/** Built-in reward functions for reasoning models: factories that validate their options once
 * and return a `RewardFn` for `combineRewards`. */
export { finalAnswer } from "./answer.ts";
export { conclusions } from "./conclusion.ts";
export { consistencyReward } from "./consistency.ts";
export { type CorrectnessOptions, correctnessReward } from "./correctness.ts";
export {
  DEFAULT_REWARD_WEIGHTS,
  type DefaultRewardName,
  type DefaultRewardsOptions,
  defaultRewards,
} from "./defaults.ts";
export { type Equation, findEquations } from "./equations.ts";
export { type FormatRewardOptions, formatReward } from "./format.ts";
export { type LengthRewardOptions, lengthReward } from "./length.ts";
export { processReward } from "./process.ts";
