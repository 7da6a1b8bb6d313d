/** Preference optimization: the trainDpo cell, its metrics, and a generated arithmetic
 * preference set to try it on. */
export { type DpoMetrics, sequenceLogprob } from "./metrics.ts";
export {
  type ArithmeticPreference,
  type ArithmeticPreferenceOptions,
  arithmeticPreferences,
  CORRUPTIONS,
  type Corruption,
} from "./preference-data.ts";
export {
  DPO_REFERENCES,
  type DpoDataRow,
  type DpoEvaluation,
  type DpoReference,
  type DpoResult,
  type DpoStepMetrics,
  type DpoTrainer,
  type DroppedPair,
  dpoTrainer,
  type TrainDpoOptions,
  trainDpo,
} from "./train-dpo.ts";
