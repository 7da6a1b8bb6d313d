import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatReasoning, gsm8kToCot, type ReasoningStyle } from "../cells-lib/reasoning/index.ts";
import {
  correctnessReward,
  DEFAULT_REWARD_WEIGHTS,
  defaultRewards,
  formatReward,
  processReward,
} from "../cells-lib/rewards/index.ts";
import { combineRewards, type RewardContext } from "../cells-lib/rl/rewards.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { sharedPath } from "./helpers.ts";

const sample = (completion: string, reference: string | undefined, length: number): RewardContext<{ id: number }> => ({
  prompt: "58+67?",
  completion,
  completionIds: Array.from({ length }, (_, i) => i),
  reference,
  row: { id: length },
  step: 3,
});

describe("defaultRewards", () => {
  it("builds the seed recipe's five rewards with its weights", () => {
    const specs = defaultRewards({ maxLength: 20, cacheLength: 8 });
    expect(Object.keys(specs)).toEqual(["correctness", "format", "consistency", "length", "process"]);
    expect(Object.fromEntries(Object.entries(specs).map(([name, s]) => [name, s.weight]))).toEqual(
      DEFAULT_REWARD_WEIGHTS,
    );
    const custom = defaultRewards({
      style: "reasoning_answer",
      maxLength: 20,
      cacheLength: 8,
      weights: { length: 0.5, process: 0 },
    });
    expect(Object.values(custom).map((s) => s.weight)).toEqual([0.4, 0.2, 0.2, 0.5, 0]);
  });

  it("scores samples end to end through combineRewards", async () => {
    const scores = await combineRewards<{ id: number }>(
      defaultRewards({ style: "think", maxLength: 20, cacheLength: 8 }),
    ).score([
      // Right, well formed, consistent, short, true steps: 0.4 + 0.2 + 0.2 + 0 + 0.1.
      sample("<think> 8+7=15, 5+6+1=12 </think> 125", "125", 10),
      // Wrong step, answered faithfully, in the length buffer: 0 + 0.2 + 0.2 + 0.1·(12−16)/8 + 0.1·½.
      sample("<think> 8+7=15, 5+6+1=13 </think> 135", "125", 16),
      // Cut off: no answer, no numbers, too long: 0 + 0 + (null) + 0.1·(−1) + (null).
      sample("<think> I know this one", "125", 25),
      // A bare answer: right, but no format and no reasoning: 0.4 + 0 + (null) + 0 + (null).
      sample("125", "125", 3),
      // No reference: correctness null; the rest as in the first sample: 0.2 + 0.2 + 0.1.
      sample("<think> 8+7=15, 5+6+1=12 </think> 125", undefined, 10),
    ]);
    expect(scores.values).toEqual({
      correctness: [1, 0, 0, 1, null],
      format: [1, 1, 0, 0, 1],
      consistency: [1, 1, null, null, 1],
      length: [0, -0.5, -1, 0, 0],
      process: [1, 0.5, null, null, 1],
    });
    const expected = [0.9, 0.4, -0.1, 0.4, 0.5];
    scores.totals.forEach((total, i) => expect(total, `sample ${i}`).toBeCloseTo(expected[i]!, 12));
    expect(scores.problems).toEqual([]);
  });

  it("explains bad options", () => {
    expect(() => defaultRewards({ cacheLength: 8 } as never)).toThrow(OptionsError);
    expect(() => defaultRewards({ cacheLength: 8 } as never)).toThrow(/defaultRewards: option "maxLength"/);
    expect(() => defaultRewards({ maxLength: 20, cacheLength: 8, weights: { speed: 1 } } as never)).toThrow(
      /unknown option "speed"/,
    );
    expect(() => defaultRewards({ maxLength: 20, cacheLength: 8, style: "xml" } as never)).toThrow(/option "style"/);
    expect(() => defaultRewards({ maxLength: 8, cacheLength: 20 })).toThrow(/lengthReward: option "cacheLength"/);
  });
});

const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "the rewards on gold GSM8K solutions");

describe.skipIf(!gsm8kTest)("the rewards on gold GSM8K solutions", () => {
  const rows: { question: string; answer: string }[] =
    gsm8kTest === undefined
      ? []
      : readFileSync(gsm8kTest, "utf8")
          .trim()
          .split("\n")
          .slice(0, 200)
          .map((line) => JSON.parse(line));

  it.each<ReasoningStyle>(["think", "reasoning_answer"])(
    "scores correctness 1, format 1 and process 1 (or null) in the %s style",
    async (style) => {
      const samples = rows.map((row, id) => {
        const cot = gsm8kToCot(row.answer);
        return {
          prompt: row.question,
          completion: formatReasoning(cot, style),
          completionIds: [],
          reference: cot.answer,
          row: { id },
          step: 0,
        };
      });
      const scores = await combineRewards({
        correctness: { fn: correctnessReward(), weight: 1 },
        format: { fn: formatReward({ style }), weight: 1 },
        process: { fn: processReward(), weight: 1 },
      }).score(samples);
      expect(scores.values.correctness!.every((v) => v === 1)).toBe(true);
      expect(scores.values.format!.every((v) => v === 1)).toBe(true);
      // Every stated equation holds; 29 solutions state their arithmetic only with units
      // (`4 * 20 sheep = 80 sheep`), which is skipped, not guessed at.
      expect(new Set(scores.values.process)).toEqual(new Set([1, null]));
      expect(scores.values.process!.filter((v) => v === null)).toHaveLength(29);
    },
  );

  it("finds the gold answers consistent with the gold reasoning", async () => {
    const specs = defaultRewards({ maxLength: 512, cacheLength: 128 });
    const samples = rows.map((row, id) => {
      const cot = gsm8kToCot(row.answer);
      return {
        prompt: row.question,
        completion: formatReasoning(cot),
        completionIds: [],
        reference: cot.answer,
        row: { id },
        step: 0,
      };
    });
    const scores = await combineRewards(specs).score(samples);
    expect(scores.values.consistency!.every((v) => v === 1)).toBe(true);
    // 0.4 + 0.2 + 0.2 + 0 + 0.1 with process, 0.8 without.
    expect(new Set(scores.totals.map((t) => t!.toFixed(12)))).toEqual(new Set(["0.900000000000", "0.800000000000"]));
  });
});
