/** Reinforcement-learning maths for reasoning models: rewards, advantages, batch shaping. */
export { type GroupAdvantageOptions, type GroupAdvantages, groupAdvantages } from "./advantages.ts";
export {
  type DynamicSampleOptions,
  type DynamicSampleResult,
  dynamicSample,
  type GroupOutcomes,
  isInformative,
} from "./dynamic-sampling.ts";
export { type GaeOptions, type GaeResult, gae, type WhitenOptions, whiten } from "./gae.ts";
export {
  type DifficultyWeightOptions,
  difficultyWeight,
  type LeadRewardOptions,
  type LeadSample,
  leadRewards,
  reweightByDifficulty,
} from "./lead.ts";
export { type OverlongOptions, overlongMask, overlongPenalty } from "./overlong.ts";
export {
  combineRewards,
  type NamedRewardSpec,
  type RewardCombiner,
  type RewardContext,
  RewardError,
  type RewardFn,
  type RewardProblem,
  type RewardScores,
  type RewardSpec,
  type RewardSpecs,
  type RewardStats,
  type ScoreOptions,
} from "./rewards.ts";
