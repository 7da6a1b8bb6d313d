/** Reinforcement-learning maths for reasoning models: rewards, advantages, batch shaping. */
export { groupAdvantages, type GroupAdvantageOptions, type GroupAdvantages } from "./advantages.ts";
export { dynamicSample, isInformative, type DynamicSampleOptions, type DynamicSampleResult, type GroupOutcomes } from "./dynamic-sampling.ts";
export { gae, whiten, type GaeOptions, type GaeResult, type WhitenOptions } from "./gae.ts";
export { difficultyWeight, leadRewards, reweightByDifficulty, type DifficultyWeightOptions, type LeadRewardOptions, type LeadSample } from "./lead.ts";
export { overlongMask, overlongPenalty, type OverlongOptions } from "./overlong.ts";
export {
  combineRewards,
  RewardError,
  type NamedRewardSpec,
  type RewardCombiner,
  type RewardContext,
  type RewardFn,
  type RewardProblem,
  type RewardScores,
  type RewardSpec,
  type RewardSpecs,
  type RewardStats,
  type ScoreOptions,
} from "./rewards.ts";
