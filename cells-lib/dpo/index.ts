/** Preference optimization: the trainDpo cell, DPO's reward arithmetic, and a generated
 * arithmetic preference set to try it on. */
export { dpoMetrics, implicitRewards, logSigmoid, sequenceLogprob, type DpoMetrics, type PairLogprobs } from "./metrics.ts";
export { arithmeticPreferences, CORRUPTIONS, type ArithmeticPreference, type ArithmeticPreferenceOptions, type Corruption } from "./preference-data.ts";
export {
  DPO_REFERENCES,
  dpoTrainer,
  trainDpo,
  type DpoDataRow,
  type DpoEvaluation,
  type DpoReference,
  type DpoResult,
  type DpoStepMetrics,
  type DpoTrainer,
  type DroppedPair,
  type TrainDpoOptions,
} from "./train-dpo.ts";
