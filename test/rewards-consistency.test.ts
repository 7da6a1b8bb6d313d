import { describe, expect, it } from "vitest";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { conclusions, consistencyReward } from "../cells-lib/rewards/index.ts";
import type { RewardContext } from "../cells-lib/rl/rewards.ts";

const ctx = (completion: string): RewardContext => ({ prompt: "q", completion, completionIds: [], row: {}, step: 0 });

describe("conclusions", () => {
  it("takes the first number after the last = or 'answer is' of the last sentence with a number", () => {
    expect(conclusions("She makes 9 * 2 = $18 every day.")).toEqual(["18"]);
    expect(conclusions("So he made a profit of 200,000-130,000=$70,000")).toEqual(["70000"]);
    expect(conclusions("It is 3*4 = 12. So the answer is 17 apples for 3 kids.")).toEqual(["17"]);
    expect(conclusions("Thus, W = 1 1/2 / 1/2 = 3 episodes.")).toEqual(["3"]);
    expect(conclusions("Each costs 15/30 = $0.50.\nThat is all.")).toEqual(["0.5"]);
    expect(conclusions("3 - 5 = -2")).toEqual(["-2"]);
  });

  it("takes the last number of that sentence when it has no result marker", () => {
    expect(conclusions("He had 12 = 3*4 apples. He gave 2 away, so he has 10 left.")).toEqual(["10"]);
    expect(conclusions("I think it is 4 * .25 or so")).toEqual(["0.25"]);
    expect(conclusions("no numbers here")).toEqual([]);
  });

  it("also reads column work off its columns", () => {
    expect(conclusions("8+7=15, 5+6+1=12")).toEqual(["12", "125"]);
    expect(conclusions("13-7=6, 12-1-6=5, 5-1-1=3")).toEqual(["3", "356"]);
    expect(conclusions("11-9=2, 10-1-9=0, 5-1-4=0")).toEqual(["0", "002"]);
    expect(conclusions("7*3=21, 4*3+2=14")).toEqual(["14", "141"]);
    expect(conclusions("3*4=12, 12+5=17")).toEqual(["17", "172"]);
    expect(conclusions("3+5=8")).toEqual(["8"]);
  });
});

describe("consistencyReward", () => {
  const consistency = consistencyReward();
  const rows = generateArithmetic({
    count: 500,
    seed: 5,
    difficulty: [1, 2, 3, 4, 5],
    operations: { add: 1, sub: 1, mul: 1 },
  });

  it("finds every synthetic answer consistent with its column steps, and a different answer not", () => {
    for (const row of rows) {
      expect(consistency(ctx(formatExample(row).completion)), row.prompt).toBe(1);
      expect(
        consistency(ctx(formatExample({ ...row, answer: String(Number(row.answer) + 100) }).completion)),
        row.prompt,
      ).toBe(0);
    }
    expect(consistency(ctx("<think> 8+7=15, 5+6+1=12 </think> 125"))).toBe(1);
    expect(consistency(ctx("<think> 7*6=42, 4*6+4=28, 7*3=21, 4*3+2=14, 282+1410=1692 </think> 1692"))).toBe(1);
    // Wrong arithmetic, answered faithfully: consistent (the process reward catches the step).
    expect(consistency(ctx("<think> 8+7=15, 5+6+1=13 </think> 135"))).toBe(1);
    expect(consistency(ctx("<think> 8+7=15, 5+6+1=12 </think> 135"))).toBe(0);
    // The last result is a candidate too (see conclusions).
    expect(consistency(ctx("<think> 8+7=15, 5+6+1=12 </think> 12"))).toBe(1);
  });

  it("compares prose reasoning's conclusion with the answer", () => {
    const prose = "<think>Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day.</think>";
    expect(consistency(ctx(`${prose} 18`))).toBe(1);
    expect(consistency(ctx(`${prose} The answer is $18.00.`))).toBe(1);
    expect(consistency(ctx(`${prose} 9`))).toBe(0);
    expect(
      consistency(ctx("<reasoning>She has 12 and gives 2 away, so 10 are left.</reasoning><answer>10</answer>")),
    ).toBe(1);
    expect(consistency(ctx("2+2 = 4, so \\boxed{4}"))).toBe(1);
    expect(consistency(ctx("<think>1 of 2 halves is 1/2</think> 0.5"))).toBe(1);
  });

  it("is 0 without an answer and null without reasoning or a numeric conclusion", () => {
    expect(consistency(ctx("<think>2+2=4</think>"))).toBe(0);
    expect(consistency(ctx("<think>2+2=4"))).toBe(0);
    expect(consistency(ctx("<think>easy</think> 4"))).toBeNull();
    expect(consistency(ctx("2+2=4 so 4"))).toBeNull();
    expect(consistency(ctx("<think></think> 4"))).toBeNull();
  });
});
