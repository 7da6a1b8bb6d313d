/** Pairwise comparison of two models' completions: who wins each prompt under a reward function
 * or a judge, and the win rate (a tie counts half). Pure: the playground samples, this scores. */
import type { RewardContext, RewardFn } from "../rl/rewards.ts";

/** Which completion is better: "a" (the base model's), "b" (the trained model's), or neither. */
export type Verdict = "a" | "b" | "tie";

/** Compares two completions of one prompt; back it by a model, a rubric or a person. */
export type JudgeFn<Row> = (prompt: string, a: string, b: string, row: Row) => Verdict | Promise<Verdict>;

/** What is being compared: how `scoreRow` reads the winner. */
export type Scorer<Row> = { reward: RewardFn<Row> } | { judge: JudgeFn<Row> };

export interface Pair<Row> {
  row: Row;
  prompt: string;
  reference?: string;
  base: { text: string; tokenIds: number[] };
  trained: { text: string; tokenIds: number[] };
}

export type Winner = "trained" | "base" | "tie";

export interface PairResult {
  /** null: not decided (a reward gave no value for one of the two). */
  winner: Winner | null;
  /** The reward's values (reward scorer only). */
  baseReward?: number | null;
  trainedReward?: number | null;
}

export interface WinCounts {
  wins: number;
  losses: number;
  ties: number;
  /** Pairs left out of the rate: a reward returned null for one of the completions. */
  undecided: number;
}

export async function scorePair<Row>(pair: Pair<Row>, scorer: Scorer<Row>): Promise<PairResult> {
  if ("judge" in scorer) {
    const verdict = await scorer.judge(pair.prompt, pair.base.text, pair.trained.text, pair.row);
    if (verdict !== "a" && verdict !== "b" && verdict !== "tie") {
      throw new TypeError(
        `playground: the judge returned ${JSON.stringify(verdict)}; it must return "a", "b" or "tie"`,
      );
    }
    return { winner: verdict === "a" ? "base" : verdict === "b" ? "trained" : "tie" };
  }
  const score = async (c: Pair<Row>["base"]) => {
    const ctx: RewardContext<Row> = {
      prompt: pair.prompt,
      completion: c.text,
      completionIds: c.tokenIds,
      row: pair.row,
      step: 0,
    };
    if (pair.reference !== undefined) ctx.reference = pair.reference;
    const value = await scorer.reward(ctx);
    if (value !== null && (typeof value !== "number" || !Number.isFinite(value))) {
      throw new TypeError(`playground: the reward returned ${String(value)}; it must return a finite number or null`);
    }
    return value;
  };
  const baseReward = await score(pair.base);
  const trainedReward = await score(pair.trained);
  const winner =
    baseReward === null || trainedReward === null
      ? null
      : trainedReward > baseReward
        ? "trained"
        : trainedReward < baseReward
          ? "base"
          : "tie";
  return { winner, baseReward, trainedReward };
}

export function countWins(results: readonly PairResult[]): WinCounts {
  const count = (w: Winner | null) => results.filter((r) => r.winner === w).length;
  return { wins: count("trained"), losses: count("base"), ties: count("tie"), undecided: count(null) };
}

/** The trained model's win rate over the decided pairs, a tie counting half; null when none was decided. */
export function winRate(c: WinCounts): number | null {
  const decided = c.wins + c.losses + c.ties;
  return decided === 0 ? null : (c.wins + c.ties / 2) / decided;
}
