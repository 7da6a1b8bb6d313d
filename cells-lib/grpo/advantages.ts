/** One step's rewards → advantages, for the group-based algorithms (pure). */
import { groupAdvantages } from "../rl/advantages.ts";
import { leadRewards, reweightByDifficulty } from "../rl/lead.ts";
import { overlongPenalty } from "../rl/overlong.ts";
import type { AlgorithmSettings } from "./algorithms.ts";

export interface ScoredGroup {
  /** Weighted reward per completion (null: no reward function gave a value). */
  totals: readonly (number | null)[];
  /** The correctness reward's verdict per completion, when the run names one (for GRPO-LEAD). */
  correct?: readonly (boolean | null)[];
  /** Completion lengths in tokens. */
  lengths: readonly number[];
  /** Completions cut off by maxNewTokens. */
  truncated: readonly boolean[];
}

export interface StepAdvantages {
  /** The rewards the advantages came from (after overlong penalty / LEAD). */
  rewards: (number | null)[][];
  advantages: number[][];
  /** false: masked out of the loss (DAPO's overlong filtering). */
  keep: boolean[][];
  zeroStdFraction: number;
}

export interface AdvantageContext {
  settings: AlgorithmSettings;
  maxNewTokens: number;
  /** DAPO's soft-penalty buffer (L_cache). */
  overlongCache: number;
  /** GRPO-LEAD: the correctness reward's weight (LEAD swaps its 0/1 term for the length-dependent reward). */
  correctnessWeight?: number;
}

export function stepAdvantages(groups: readonly ScoredGroup[], ctx: AdvantageContext): StepAdvantages {
  const { settings } = ctx;
  const rewards = groups.map((g) =>
    g.totals.map((total, i) => {
      if (total === null) return null;
      let r = total;
      if (settings.overlong === "penalty")
        r += overlongPenalty(g.lengths[i]!, { maxLength: ctx.maxNewTokens, cacheLength: ctx.overlongCache });
      return r;
    }),
  );
  if (settings.lead) {
    const weight = ctx.correctnessWeight;
    if (weight === undefined)
      throw new Error("stepAdvantages: GRPO-LEAD needs correctnessWeight, the correctness reward's weight");
    groups.forEach((g, gi) => {
      const correct = g.correct;
      if (!correct || correct.some((c) => c === null)) return;
      const lead = leadRewards(correct.map((c, i) => ({ correct: c === true, length: g.lengths[i]! })));
      rewards[gi] = rewards[gi]!.map((r, i) =>
        r === null ? null : r - weight * Number(correct[i]) + weight * lead[i]!,
      );
    });
  }
  const { advantages, zeroStdFraction } = groupAdvantages(rewards, { scale: settings.scale });
  if (settings.lead) {
    groups.forEach((g, gi) => {
      if (!g.correct || g.correct.some((c) => c === null)) return;
      const rho = g.correct.filter((c) => c === true).length / g.correct.length;
      advantages[gi] = reweightByDifficulty(advantages[gi]!, rho);
    });
  }
  const keep = groups.map((g) => g.truncated.map((t) => !(settings.overlong === "mask" && t)));
  return { rewards, advantages, keep, zeroStdFraction };
}
