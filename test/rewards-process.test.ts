import { describe, expect, it } from "vitest";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { findEquations, processReward } from "../cells-lib/rewards/index.ts";
import type { RewardContext } from "../cells-lib/rl/rewards.ts";

const ctx = (completion: string): RewardContext => ({ prompt: "q", completion, completionIds: [], row: {}, step: 0 });
const found = (text: string) => findEquations(text).map((e) => [e.text, e.holds]);

describe("findEquations", () => {
  it("evaluates with the usual precedence, left to right", () => {
    expect(found("2+3*4=14, 2+3*4=20")).toEqual([
      ["2+3*4=14", true],
      ["2+3*4=20", false],
    ]);
    expect(found("(2+3)*4=20; 10-4-3=3; 12/2/3=2; 2*3-4/2=4")).toEqual([
      ["(2+3)*4=20", true],
      ["10-4-3=3", true],
      ["12/2/3=2", true],
      ["2*3-4/2=4", true],
    ]);
    expect(found("Toula paid 3 * (16.50 + 22.50 + 42) = $243 in all")).toEqual([
      ["3 * (16.50 + 22.50 + 42) = $243", true],
    ]);
  });

  it("reads the usual operator signs, decimals, signs and thousands separators", () => {
    expect(found("6 × 7 = 42 and 84 ÷ 2 = 42 and 84 / 2 = 41")).toEqual([
      ["6 × 7 = 42", true],
      ["84 ÷ 2 = 42", true],
      ["84 / 2 = 41", false],
    ]);
    expect(found("Her rate is $10 x 1.2 = $12. Then $2000x 10/100 = $200.")).toEqual([
      ["$10 x 1.2 = $12", true],
      ["$2000x 10/100 = $200", true],
    ]);
    expect(found("\\(3 \\times 4 = 12\\), \\(3 \\cdot 4 = 12\\), \\(8 \\div 4 = 2\\)")).toEqual([
      ["3 \\times 4 = 12", true],
      ["3 \\cdot 4 = 12", true],
      ["8 \\div 4 = 2", true],
    ]);
    expect(found("30*.5=15, 2-.5=1.5")).toEqual([
      ["30*.5=15", true],
      ["2-.5=1.5", true],
    ]);
    expect(found("-3 + 5 = 2, 2 * -3 = -6, 45 -40 = 5, 54 − 37 = 17, 22 – 7 = 15")).toEqual([
      ["-3 + 5 = 2", true],
      ["2 * -3 = -6", true],
      ["45 -40 = 5", true],
      ["54 − 37 = 17", true],
      ["22 – 7 = 15", true],
    ]);
    expect(found("80,000+50,000=$130,000")).toEqual([["80,000+50,000=$130,000", true]]);
  });

  it("reads fractions and mixed numbers as numbers", () => {
    expect(found("It takes 2/2=1 bolt")).toEqual([["2/2=1", true]]);
    expect(found("5 - 1 - 1/2 = 3 1/2 hours. Thus, W = 1 1/2 / 1/2 = 3 episodes.")).toEqual([
      ["5 - 1 - 1/2 = 3 1/2", true],
      ["1 1/2 / 1/2 = 3", true],
    ]);
    expect(found("He runs 6*(2/3)=4 hours")).toEqual([["6*(2/3)=4", true]]);
  });

  it("reads % as ÷100 or as a label on a percentage", () => {
    expect(found("$50,000 * 50% = $25,000")).toEqual([["$50,000 * 50% = $25,000", true]]);
    expect(found("3/4 = 75%, 18 / 450 x 100 = 4%, 12/20 x 100% = 60%, 168/20% = 840")).toEqual([
      ["3/4 = 75%", true],
      ["18 / 450 x 100 = 4%", true],
      ["12/20 x 100% = 60%", true],
      ["168/20% = 840", true],
    ]);
    expect(found("50% * 8 = 40")).toEqual([["50% * 8 = 40", false]]);
  });

  it("allows rounding to the decimals a number shows, never for whole numbers", () => {
    expect(found("31 / 3 = 10.33; 1/3 = 0.3; 9/27 * 100% = 33.333%")).toEqual([
      ["31 / 3 = 10.33", true],
      ["1/3 = 0.3", true],
      ["9/27 * 100% = 33.333%", true],
    ]);
    expect(found("2/3 = 0.6; 31 / 3 = 10.3333 + 1; 13 / 6 = 2; 0.1+0.2=0.3")).toEqual([
      ["2/3 = 0.6", false],
      ["31 / 3 = 10.3333 + 1", false],
      ["13 / 6 = 2", false],
      ["0.1+0.2=0.3", true],
    ]);
  });

  it("checks each link of a chain and only the purely numeric links", () => {
    expect(found("60/4 = 15 = 3*5 = 16")).toEqual([
      ["60/4 = 15", true],
      ["15 = 3*5", true],
      ["3*5 = 16", false],
    ]);
    expect(found("x=220+23-80=163 Post-it notes")).toEqual([["220+23-80=163", true]]);
    expect(found("So, 2L = 22 - 8 = 14")).toEqual([["22 - 8 = 14", true]]);
    expect(found("60g * 4/5 = 240g/5 = 48 grams")).toEqual([]);
  });

  it("skips sides with words, units or unknowns in them instead of guessing", () => {
    expect(found("Charleston has 4 * 20 sheep = 80 sheep")).toEqual([]);
    expect(found("$20/hour * 35 hours/week = $700/week")).toEqual([]);
    expect(found("2/3 * x = 12, X - X*25% = $19.50, x+x+30=110\n2*x=80, 4x-13=7")).toEqual([]);
    expect(found("Poppy has placed 1000 pieces / 4 = 250 pieces.")).toEqual([]);
    expect(found("30 x (1 and 1/3) = 40 pages")).toEqual([]);
    expect(found("7 = 7, 5/0 = 3, 5 / 0 = 3, 3 + = 3, = 4")).toEqual([]);
  });

  it("drops prose parentheses around an equation and keeps line breaks apart", () => {
    expect(found("(so 3*4 = 12) and (20/100)*25 = 5")).toEqual([
      ["3*4 = 12", true],
      ["(20/100)*25 = 5", true],
    ]);
    expect(found("3+4\n= 7")).toEqual([]);
  });

  it("checks GSM8K calculator notes on their own and reads the prose without them", () => {
    expect(found("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")).toEqual([
      ["16-3-4=9", true],
      ["16 - 3 - 4 = 9", true],
    ]);
    expect(found("Half is 48/2 = <<48/2=25>>25.")).toEqual([
      ["48/2=25", false],
      ["48/2 = 25", false],
    ]);
  });
});

describe("processReward", () => {
  const process = processReward();
  const rows = generateArithmetic({
    count: 500,
    seed: 11,
    difficulty: [1, 2, 3, 4, 5],
    operations: { add: 1, sub: 1, mul: 1 },
  });

  it("gives 1 to every synthetic solution, whose steps are all true", () => {
    for (const row of rows) {
      expect(findEquations(row.reasoning).length, row.prompt).toBe(row.reasoning.split(", ").length);
      expect(process(ctx(formatExample(row).completion)), row.prompt).toBe(1);
    }
  });

  it("gives the fraction of true steps when one is corrupted", () => {
    for (const row of rows) {
      const steps = row.reasoning.split(", ");
      const corrupted = [steps[0]!.replace(/=(\d+)$/, (_, d: string) => `=${Number(d) + 1}`), ...steps.slice(1)].join(
        ", ",
      );
      expect(process(ctx(formatExample({ ...row, reasoning: corrupted }).completion)), row.prompt).toBe(
        (steps.length - 1) / steps.length,
      );
    }
    expect(process(ctx("<think> 8+7=15, 5+6+1=13 </think> 135"))).toBe(0.5);
    expect(
      process(ctx("<reasoning>7*6=42, 4*6+4=28, 7*3=21, 4*3+2=14, 282+1410=1792</reasoning><answer>1792</answer>")),
    ).toBe(0.8);
  });

  it("reads only the reasoning, or the whole completion without markers; null without equations", () => {
    expect(process(ctx("<think>2+2=4</think> 2+2=5"))).toBe(1);
    expect(process(ctx("16 - 3 - 4 = 9 and 9 * 2 = 19\n#### 19"))).toBe(0.5);
    expect(process(ctx("<think>I just know it</think> 4"))).toBeNull();
    expect(process(ctx("<think>4 * 20 sheep = 80 sheep</think> 80"))).toBeNull();
  });
});
