import { describe, expect, it } from "vitest";
import { difficultyWeight, groupAdvantages, leadRewards, reweightByDifficulty } from "../cells-lib/rl/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

const closeAll = (actual: number[][], expected: number[][]) => {
  expect(actual.map((g) => g.length)).toEqual(expected.map((g) => g.length));
  actual.forEach((g, i) => g.forEach((x, j) => expect(x).toBeCloseTo(expected[i]![j]!, 8)));
};

describe("groupAdvantages (GRPO / Dr. GRPO)", () => {
  it("normalizes by the group's mean and unbiased std, plus 1e-4", () => {
    // [1, 2, 3]: mean 2, std = sqrt((1 + 0 + 1) / 2) = 1 → ±1 / 1.0001 = ±0.99990001.
    // [5, 5, 5]: all tie → 0, and it counts toward zeroStdFraction (1 of 2 groups).
    const { advantages, zeroStdFraction } = groupAdvantages([
      [1, 2, 3],
      [5, 5, 5],
    ]);
    closeAll(advantages, [
      [-0.9999000099990001, 0, 0.9999000099990001],
      [0, 0, 0],
    ]);
    expect(zeroStdFraction).toBe(0.5);
  });

  it('"batch" keeps each group\'s mean but divides by the std of the whole batch (TRL\'s scale_rewards="batch")', () => {
    // Batch [2, 4, −1, 1, 0]: mean 1.2, squared deviations 0.64 + 7.84 + 4.84 + 0.04 + 1.44 = 14.8,
    // variance 14.8 / 4 = 3.7, std 1.92353841. Group means 3 and 0:
    // [2, 4] → ∓1 / 1.92363841 = ∓0.51984822; [−1, 1, 0] → ∓0.51984822, 0.
    const { advantages } = groupAdvantages(
      [
        [2, 4],
        [-1, 1, 0],
      ],
      { scale: "batch" },
    );
    closeAll(advantages, [
      [-0.5198482192880045, 0.5198482192880045],
      [-0.5198482192880045, 0.5198482192880045, 0],
    ]);
  });

  it('"none" only subtracts the group mean (Dr. GRPO)', () => {
    // [1, 2, 6]: mean 3.
    const { advantages } = groupAdvantages([[1, 2, 6]], { scale: "none" });
    closeAll(advantages, [[-2, -1, 3]]);
  });

  it("gives null rewards advantage 0 and leaves them out of mean and std", () => {
    // Values [1, 3]: mean 2, std sqrt(2) → ∓1 / (1.41421356 + 0.0001) = ∓0.70705678.
    const { advantages, zeroStdFraction } = groupAdvantages([[1, null, 3]]);
    closeAll(advantages, [[-0.7070567847218314, 0, 0.7070567847218314]]);
    expect(zeroStdFraction).toBe(0);
  });

  it("handles degenerate groups: single sample, all null, empty, empty batch", () => {
    const { advantages, zeroStdFraction } = groupAdvantages([[7], [null, null], []]);
    expect(advantages).toEqual([[0], [0, 0], []]);
    expect(zeroStdFraction).toBe(1);
    expect(groupAdvantages([])).toEqual({ advantages: [], zeroStdFraction: 0 });
    expect(groupAdvantages([[7]], { scale: "batch" }).advantages).toEqual([[0]]);
  });

  it("rejects non-finite rewards and bad options", () => {
    expect(() => groupAdvantages([[1, Number.NaN]])).toThrow("reward 1 of group 0 is NaN");
    expect(() => groupAdvantages([[1]], { scale: "rank" as "group" })).toThrow(OptionsError);
    expect(() => groupAdvantages([[1]], { eps: 0 })).toThrow(/option "eps"/);
  });
});

describe("GRPO-LEAD", () => {
  it("rewards correct completions by standardized length and gives −1 to incorrect ones", () => {
    // Correct lengths 10, 20, 30: μ 20, σ = sqrt((100 + 0 + 100) / 2) = 10, z = (|o| − 20) / 10.0001.
    // exp(−0.05·(−10/10.0001)) = 1.05127057, exp(0) = 1, exp(−0.05·10/10.0001) = 0.95122990.
    const rewards = leadRewards([
      { correct: true, length: 10 },
      { correct: true, length: 20 },
      { correct: true, length: 30 },
      { correct: false, length: 50 },
    ]);
    [1.0512705707458636, 1, 0.951229900110789, -1].forEach((r, i) => expect(rewards[i]).toBeCloseTo(r, 8));
  });

  it("gives a lone correct completion reward 1, and handles all-wrong and empty groups", () => {
    expect(
      leadRewards([
        { correct: true, length: 40 },
        { correct: false, length: 5 },
      ]),
    ).toEqual([1, -1]);
    expect(leadRewards([{ correct: false, length: 3 }])).toEqual([-1]);
    expect(leadRewards([])).toEqual([]);
    expect(() => leadRewards([{ correct: true, length: -1 }])).toThrow(/length -1/);
  });

  it("weights difficulty with the logistic w(ρ)", () => {
    // w(0.75) = 0.4 + 1.1 / (1 + e⁰) = 0.95; w(0.25) = 0.4 + 1.1 / (1 + e⁻⁵) = 1.49263786;
    // w(1) = 0.4 + 1.1 / (1 + e^2.5) = 0.4 + 1.1 / 13.18249396 = 0.48344400.
    expect(difficultyWeight(0.75)).toBeCloseTo(0.95, 12);
    expect(difficultyWeight(0.25)).toBeCloseTo(1.492637863983287, 12);
    expect(difficultyWeight(1)).toBeCloseTo(0.4834439980233679, 12);
    expect(difficultyWeight(0.5, { A: 1, B: 1 })).toBe(1);
    expect(() => difficultyWeight(1.5)).toThrow(/\[0, 1\]/);
  });

  it("scales positive advantages by w(ρ) and the rest by w(1 − ρ)", () => {
    // ρ = 0.25: 0.5·w(0.25) = 0.74631893; −0.5·w(0.75) = −0.475; 0 stays 0.
    const out = reweightByDifficulty([0.5, -0.5, 0], 0.25);
    [0.7463189319916435, -0.475, 0].forEach((a, i) => expect(out[i]).toBeCloseTo(a, 12));
    expect(reweightByDifficulty([], 0.5)).toEqual([]);
  });
});
