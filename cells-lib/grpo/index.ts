/** Stage 2: RL against verifiable rewards — GRPO, Dr.GRPO, DAPO, GSPO, GRPO-LEAD and PPO. */
export { ALGORITHM_SETTINGS, ALGORITHMS, type Algorithm, type AlgorithmSettings } from "./algorithms.ts";
export { stepAdvantages, type ScoredGroup, type StepAdvantages } from "./advantages.ts";
export { grpoStep, grpoTrainer, trainGrpo, type GrpoOptions, type GrpoRow, type GrpoStepMetrics, type GrpoTrainer } from "./trainer.ts";
