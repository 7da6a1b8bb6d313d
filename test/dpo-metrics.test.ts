/** DPO's reward arithmetic on hand numbers, and the generated arithmetic preference set. */
import { describe, expect, it } from "vitest";
import { arithmeticPreferences, CORRUPTIONS } from "../cells-lib/dpo/preference-data.ts";
import { dpoMetrics, implicitRewards, logSigmoid, sequenceLogprob, type PairLogprobs } from "../cells-lib/dpo/metrics.ts";
import { checkFormat, formatExample, generateArithmetic, parseReasoning } from "../cells-lib/reasoning/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

const LOG2 = Math.log(2);

describe("DPO metrics", () => {
  it("sums log-probs over the masked (completion) tokens", () => {
    // 4 tokens: log-probs belong to tokens 1..3; the mask's index 0 is never predicted.
    expect(sequenceLogprob([-1, -2, -3], [0, 0, 1, 1])).toBe(-5);
    expect(sequenceLogprob([-1, -2, -3], [1, 1, 1, 1])).toBe(-6);
    expect(sequenceLogprob([-1, -2, -3], [0, 0, 0, 0])).toBe(0);
    expect(() => sequenceLogprob([-1, -2], [0, 1])).toThrow(/need a mask of 3 values/);
  });

  it("computes implicit rewards β·(logπ − logπ_ref)", () => {
    const r = implicitRewards({ policyChosen: -10, refChosen: -12, policyRejected: -15, refRejected: -14 }, 0.1);
    expect(r.chosen).toBeCloseTo(0.2, 12);
    expect(r.rejected).toBeCloseTo(-0.1, 12);
    expect(r.margin).toBeCloseTo(0.3, 12);
  });

  it("averages loss, reward accuracy, margin and the rewards over pairs", () => {
    const pairs: PairLogprobs[] = [
      // Δ = (−10 + 12) − (−15 + 14) = 3 → margin 0.3
      { policyChosen: -10, refChosen: -12, policyRejected: -15, refRejected: -14 },
      // Δ = (−20 + 19) − (−9 + 10) = −2 → margin −0.2
      { policyChosen: -20, refChosen: -19, policyRejected: -9, refRejected: -10 },
      // Δ = 0: a tie is not a win
      { policyChosen: -5, refChosen: -5, policyRejected: -7, refRejected: -7 },
    ];
    const m = dpoMetrics(pairs, 0.1);
    expect(m.pairs).toBe(3);
    expect(m.rewardAccuracy).toBeCloseTo(1 / 3, 12);
    expect(m.margin).toBeCloseTo((0.3 - 0.2 + 0) / 3, 12);
    expect(m.chosenReward).toBeCloseTo((0.2 - 0.1 + 0) / 3, 12);
    expect(m.rejectedReward).toBeCloseTo((-0.1 + 0.1 + 0) / 3, 12);
    const expected = (Math.log1p(Math.exp(-0.3)) + Math.log1p(Math.exp(0.2)) + LOG2) / 3;
    expect(m.loss).toBeCloseTo(expected, 12);
    expect(m.margin).toBeCloseTo(m.chosenReward - m.rejectedReward, 12);
  });

  it("starts at loss log 2, accuracy 0 and margin 0 when π = π_ref", () => {
    const same = [-3, -8, -1].map((x) => ({ policyChosen: x, refChosen: x, policyRejected: x - 1, refRejected: x - 1 }));
    expect(dpoMetrics(same, 0.1)).toEqual({ loss: LOG2, rewardAccuracy: 0, margin: 0, chosenReward: 0, rejectedReward: 0, pairs: 3 });
    expect(dpoMetrics([], 0.1).pairs).toBe(0);
    expect(() => dpoMetrics(same, 0)).toThrow(/beta must be positive/);
  });

  it("keeps log σ finite far from 0", () => {
    expect(logSigmoid(0)).toBeCloseTo(-LOG2, 15);
    expect(logSigmoid(-1000)).toBe(-1000);
    expect(logSigmoid(1000)).toBe(-0);
    expect(logSigmoid(2)).toBeCloseTo(Math.log(1 / (1 + Math.exp(-2))), 14);
    expect(dpoMetrics([{ policyChosen: -5000, refChosen: 0, policyRejected: 0, refRejected: 0 }], 1).loss).toBe(5000);
  });
});

describe("arithmeticPreferences", () => {
  const rows = arithmeticPreferences({ count: 600, seed: 2, difficulty: [1, 2, 3, 4, 5], operations: { add: 1, sub: 1, mul: 1 } });

  it("is deterministic, and its problems are generateArithmetic's", () => {
    const options = { count: 40, seed: 9 };
    expect(arithmeticPreferences(options)).toEqual(arithmeticPreferences(options));
    expect(arithmeticPreferences({ ...options, seed: 10 })).not.toEqual(arithmeticPreferences(options));
    const problems = generateArithmetic(options);
    arithmeticPreferences(options).forEach((row, i) => {
      expect(row.prompt).toBe(problems[i]!.prompt);
      expect(row.chosen).toBe(formatExample(problems[i]!).completion);
      expect(row.reference).toBe(problems[i]!.answer);
    });
  });

  it("rejects a wrong completion: a wrong step and answer, a wrong answer, or broken markup", () => {
    const counts = Object.fromEntries(CORRUPTIONS.map((c) => [c, rows.filter((r) => r.corruption === c).length]));
    for (const c of CORRUPTIONS) expect(counts[c], c).toBeGreaterThan(150);
    for (const row of rows) {
      expect(row.rejected).not.toBe(row.chosen);
      expect(checkFormat(row.chosen, "think").ok).toBe(true);
      const chosen = parseReasoning(row.chosen);
      const rejected = parseReasoning(row.rejected);
      if (row.corruption === "format") {
        expect(checkFormat(row.rejected, "think").ok, row.rejected).toBe(false);
        expect(row.rejected.replace(/<\/?think>/g, "").replace(/\s+/g, " ").trim()).toBe(`${chosen.reasoning} ${row.reference}`);
        continue;
      }
      expect(checkFormat(row.rejected, "think").ok).toBe(true);
      expect(rejected.answer).not.toBe(row.reference);
      expect(rejected.answer).toMatch(/^(0|[1-9]\d*)$/);
      expect(rejected.answer).toHaveLength(row.reference.length);
      const wrongSteps = chosen.reasoning.split(", ").filter((s, i) => s !== rejected.reasoning.split(", ")[i]);
      expect(wrongSteps).toHaveLength(row.corruption === "step" ? 1 : 0);
    }
  });

  it("repeats a wrong step's digit in the answer where that column writes it", () => {
    const row = arithmeticPreferences({ count: 200, seed: 1 }).find((r) => r.corruption === "step" && r.prompt === "22+46?");
    expect(row).toMatchObject({ chosen: "<think> 2+6=8, 2+4=6 </think> 68", rejected: "<think> 2+6=9, 2+4=6 </think> 69" });
  });

  it("follows the corruption weights and the style", () => {
    const only = arithmeticPreferences({ count: 50, seed: 0, corruptions: { format: 1 }, style: "reasoning_answer" });
    expect(only.every((r) => r.corruption === "format" && checkFormat(r.chosen, "reasoning_answer").ok && !checkFormat(r.rejected, "reasoning_answer").ok)).toBe(true);
    const boxed = arithmeticPreferences({ count: 50, seed: 0, corruptions: { format: 1 }, style: "boxed" });
    expect(boxed.every((r) => !checkFormat(r.rejected, "boxed").ok)).toBe(true);
  });

  it("names bad options", () => {
    expect(() => arithmeticPreferences({ count: 5, corruptions: { step: 0 } })).toThrow(OptionsError);
    expect(() => arithmeticPreferences({ count: 5, corruptions: { step: 0 } })).toThrow('arithmeticPreferences: option "corruptions": at least one corruption needs a positive weight');
    expect(() => arithmeticPreferences({ count: -1 })).toThrow(/option "count"/);
    expect(() => arithmeticPreferences({ count: 1, corruptions: { typo: 1 } as never })).toThrow(/unknown option "typo"|"corruptions"/);
  });
});
