/** Stage 2: RL against verifiable rewards — GRPO, Dr.GRPO, DAPO, GSPO, GRPO-LEAD and PPO. */

export { type ScoredGroup, type StepAdvantages, stepAdvantages } from "./advantages.ts";
export { ALGORITHM_SETTINGS, ALGORITHMS, type Algorithm, type AlgorithmSettings } from "./algorithms.ts";
export {
  type InspectedCompletion,
  type InspectedGroup,
  type InspectedToken,
  type InspectRolloutsOptions,
  inspectRollouts,
  type RolloutInspection,
  type RolloutSource,
  SHADES,
  type Shade,
} from "./inspect-rollouts.ts";
export type { RolloutCompletion, RolloutGroup, RolloutStep } from "./rollouts.ts";
export {
  type GrpoOptions,
  type GrpoRow,
  type GrpoStepMetrics,
  type GrpoTrainer,
  grpoStep,
  grpoTrainer,
  trainGrpo,
} from "./trainer.ts";
