/** GRPO-LEAD (arXiv 2504.09696): a length-aware accuracy reward and a difficulty-aware
 * reweighting of advantages. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { mean, sampleStd } from "./stats.ts";

const LeadRewardOptions = z
  .object({
    alpha: z.number().nonnegative().default(0.05),
    eps: z.number().positive().default(1e-4),
  })
  .strict();
export type LeadRewardOptions = z.input<typeof LeadRewardOptions>;

export interface LeadSample {
  correct: boolean;
  /** Completion length in tokens. */
  length: number;
}

/** exp(−α·z) for a correct completion, z its length standardized over the group's correct
 * completions (so shorter-than-usual correct answers earn more than 1), and −1 for an
 * incorrect one. Std is unbiased, as everywhere in this module. */
export function leadRewards(group: readonly LeadSample[], options?: LeadRewardOptions): number[] {
  const o = parseOptions(LeadRewardOptions, options, "leadRewards");
  group.forEach((s, i) => {
    if (!Number.isFinite(s.length) || s.length < 0)
      throw new Error(`leadRewards: sample ${i} has length ${s.length}; lengths must be finite and ≥ 0`);
  });
  const lengths = group.filter((s) => s.correct).map((s) => s.length);
  const mu = mean(lengths);
  const sigma = sampleStd(lengths);
  return group.map((s) => (s.correct ? Math.exp((-o.alpha * (s.length - mu)) / (sigma + o.eps)) : -1));
}

const DifficultyWeightOptions = z
  .object({
    A: z.number().default(0.4),
    B: z.number().default(1.5),
    rho0: z.number().default(0.75),
    k: z.number().default(10),
  })
  .strict();
export type DifficultyWeightOptions = z.input<typeof DifficultyWeightOptions>;

/** w(x) = A + (B − A) / (1 + exp(k(x − ρ₀))): near B for hard prompts (few correct), near A
 * for easy ones. */
export function difficultyWeight(rho: number, options?: DifficultyWeightOptions): number {
  const o = parseOptions(DifficultyWeightOptions, options, "difficultyWeight");
  if (!(rho >= 0 && rho <= 1)) throw new Error(`difficultyWeight: rho must be a fraction in [0, 1], got ${rho}`);
  return o.A + (o.B - o.A) / (1 + Math.exp(o.k * (rho - o.rho0)));
}

/** One group's advantages reweighted by its fraction correct ρ: Â·w(ρ) when Â > 0, else
 * Â·w(1 − ρ), so successes on hard prompts and failures on easy ones weigh most. */
export function reweightByDifficulty(
  advantages: readonly number[],
  fractionCorrect: number,
  options?: DifficultyWeightOptions,
): number[] {
  const up = difficultyWeight(fractionCorrect, options);
  const down = difficultyWeight(1 - fractionCorrect, options);
  return advantages.map((a) => a * (a > 0 ? up : down));
}
