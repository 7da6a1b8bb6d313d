/** The sequence log-prob DPO's reference is made of, and the generated arithmetic preference set.
 * (The loss and rewards are the bridge's: test/bridge/test_losses.py.) */
import { describe, expect, it } from "vitest";
import { sequenceLogprob } from "../cells-lib/dpo/metrics.ts";
import { arithmeticPreferences, CORRUPTIONS } from "../cells-lib/dpo/preference-data.ts";
import { checkFormat, formatExample, generateArithmetic, parseReasoning } from "../cells-lib/reasoning/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

describe("DPO metrics", () => {
  it("sums log-probs over the masked (completion) tokens", () => {
    // 4 tokens: log-probs belong to tokens 1..3; the mask's index 0 is never predicted.
    expect(sequenceLogprob([-1, -2, -3], [0, 0, 1, 1])).toBe(-5);
    expect(sequenceLogprob([-1, -2, -3], [1, 1, 1, 1])).toBe(-6);
    expect(sequenceLogprob([-1, -2, -3], [0, 0, 0, 0])).toBe(0);
    expect(() => sequenceLogprob([-1, -2], [0, 1])).toThrow(/need a mask of 3 values/);
  });
});

describe("arithmeticPreferences", () => {
  const rows = arithmeticPreferences({
    count: 600,
    seed: 2,
    difficulty: [1, 2, 3, 4, 5],
    operations: { add: 1, sub: 1, mul: 1 },
  });

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
        expect(
          row.rejected
            .replace(/<\/?think>/g, "")
            .replace(/\s+/g, " ")
            .trim(),
        ).toBe(`${chosen.reasoning} ${row.reference}`);
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
    const row = arithmeticPreferences({ count: 200, seed: 1 }).find(
      (r) => r.corruption === "step" && r.prompt === "22+46?",
    );
    expect(row).toMatchObject({
      chosen: "<think> 2+6=8, 2+4=6 </think> 68",
      rejected: "<think> 2+6=9, 2+4=6 </think> 69",
    });
  });

  it("follows the corruption weights and the style", () => {
    const only = arithmeticPreferences({ count: 50, seed: 0, corruptions: { format: 1 }, style: "reasoning_answer" });
    expect(
      only.every(
        (r) =>
          r.corruption === "format" &&
          checkFormat(r.chosen, "reasoning_answer").ok &&
          !checkFormat(r.rejected, "reasoning_answer").ok,
      ),
    ).toBe(true);
    const boxed = arithmeticPreferences({ count: 50, seed: 0, corruptions: { format: 1 }, style: "boxed" });
    expect(boxed.every((r) => !checkFormat(r.rejected, "boxed").ok)).toBe(true);
  });

  it("names bad options", () => {
    expect(() => arithmeticPreferences({ count: 5, corruptions: { step: 0 } })).toThrow(OptionsError);
    expect(() => arithmeticPreferences({ count: 5, corruptions: { step: 0 } })).toThrow(
      'arithmeticPreferences: option "corruptions": at least one corruption needs a positive weight',
    );
    expect(() => arithmeticPreferences({ count: -1 })).toThrow(/option "count"/);
    expect(() => arithmeticPreferences({ count: 1, corruptions: { typo: 1 } as never })).toThrow(
      /unknown option "typo"|"corruptions"/,
    );
  });
});
