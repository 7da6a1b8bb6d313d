import { describe, expect, it } from "vitest";
import { correctnessReward, finalAnswer, formatReward, lengthReward } from "../cells-lib/rewards/index.ts";
import type { RewardContext } from "../cells-lib/rl/rewards.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

const ctx = (completion: string, reference?: string, length = 0): RewardContext => ({
  prompt: "q",
  completion,
  completionIds: Array.from({ length }, (_, i) => i),
  reference,
  row: {},
  step: 0,
});

describe("finalAnswer", () => {
  it("reads the answer section when there are reasoning markers", () => {
    expect(finalAnswer("<think>2+2=4</think> 4")).toBe("4");
    expect(finalAnswer("<think>2+2=4</think> The answer is $1,234.")).toBe("1234");
    expect(finalAnswer("<reasoning>6*7=42</reasoning><answer>42</answer>")).toBe("42");
    expect(finalAnswer("<think>1/2 of 1</think> \\frac{1}{2}")).toBe("\\frac{1}{2}");
    expect(finalAnswer("so it is \\boxed{\\frac{\\pi}{2}}")).toBe("\\frac{\\pi}{2}");
    expect(finalAnswer("<think>x</think> so #### 1,000")).toBe("1,000");
  });

  it("never takes an answer from the reasoning when the answer section is empty or missing", () => {
    expect(finalAnswer("<think>2+2=4</think>")).toBeNull();
    expect(finalAnswer("<think>2+2=4, so \\boxed{4}</think>")).toBeNull();
    expect(finalAnswer("<think>2+2=4")).toBeNull();
    expect(finalAnswer("<reasoning>6*7=42</reasoning><answer></answer>")).toBeNull();
  });

  it("reads the whole completion when there are no markers", () => {
    expect(finalAnswer("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18")).toBe("18");
    expect(finalAnswer("The answer is 42.")).toBe("42");
    expect(finalAnswer("no idea")).toBeNull();
  });
});

describe("correctnessReward", () => {
  const correctness = correctnessReward();

  it("scores 1 for a matching answer and 0 for a wrong or missing one", () => {
    expect(correctness(ctx("<think>2+2=4</think> 4", "4"))).toBe(1);
    expect(correctness(ctx("<think>2+2=4</think> 5", "4"))).toBe(0);
    expect(correctness(ctx("<think>2+2=4</think>", "4"))).toBe(0);
    expect(correctness(ctx("<think>2+2=4", "4"))).toBe(0);
    expect(correctness(ctx("<reasoning>6*7=42</reasoning><answer></answer>", "42"))).toBe(0);
  });

  it("normalizes commas, signs, fractions and decimals, and reads boxes, tags and ####", () => {
    expect(correctness(ctx("<think>x</think> The answer is $1,234.", "1234"))).toBe(1);
    expect(correctness(ctx("<think>x</think> +5", "5"))).toBe(1);
    expect(correctness(ctx("<think>x</think> -1/2", "-0.5"))).toBe(1);
    expect(correctness(ctx("<reasoning>x</reasoning><answer>3/4</answer>", "0.75"))).toBe(1);
    expect(correctness(ctx("half of it: \\boxed{\\frac{1}{2}}", "1/2"))).toBe(1);
    expect(correctness(ctx("<think>x</think> \\boxed{0.50}", "1/2"))).toBe(1);
    expect(correctness(ctx("She makes 9 * 2 = $18.\n#### 18", "18"))).toBe(1);
    expect(correctness(ctx("<think>x</think> #### 1,000", "1000"))).toBe(1);
    expect(correctness(ctx("<think>x</think> 0.333", "1/3"))).toBe(0);
  });

  it("scores the answer, not the format: stray tags only matter where they move the answer", () => {
    expect(correctness(ctx("<think>a</think><think>b</think> 42", "42"))).toBe(1);
    // Everything up to the last </think> is reasoning.
    expect(correctness(ctx("<think>a</think> 42 </think>", "42"))).toBe(0);
    expect(correctness(ctx("The answer is 42.", "42"))).toBe(1);
  });

  it("gives no value without a reference", () => {
    expect(correctness(ctx("<think>x</think> 4"))).toBeNull();
    expect(correctness(ctx("<think>x</think> 4", "  "))).toBeNull();
  });

  it("takes a custom extractor, and checks its options once", () => {
    const custom = correctnessReward({ extract: (c) => /ANSWER: (\S+)/.exec(c)?.[1] ?? null });
    expect(custom(ctx("blah ANSWER: 7", "7"))).toBe(1);
    expect(custom(ctx("<think>x</think> 7", "7"))).toBe(0);
    expect(() => correctnessReward({ extract: 3 } as never)).toThrow(OptionsError);
    expect(() => correctnessReward({ extract: 3 } as never)).toThrow(
      'correctnessReward: option "extract": extract must be a function',
    );
    expect(() => correctnessReward({ style: "think" } as never)).toThrow('unknown option "style"');
  });
});

describe("formatReward", () => {
  it("gives 1 to the strict format and 0 otherwise by default", () => {
    const think = formatReward({ style: "think" });
    expect(think(ctx("<think> 3+5=8 </think> 8"))).toBe(1);
    expect(think(ctx("<think></think> 8"))).toBe(0);
    expect(think(ctx("<think>a</think>"))).toBe(0);
    expect(think(ctx("3+5=8 </think> 8"))).toBe(0);
    expect(think(ctx("8"))).toBe(0);
    expect(formatReward()(ctx("<think>a</think> 8"))).toBe(1);
  });

  it("gives partial credit when every marker is there but the check fails", () => {
    const think = formatReward({ style: "think", partial: 0.5 });
    expect(think(ctx("<think>a</think> 8"))).toBe(1);
    expect(think(ctx("<think></think> 8"))).toBe(0.5);
    expect(think(ctx("<think>a</think>"))).toBe(0.5);
    expect(think(ctx("hi <think>a</think> 8"))).toBe(0.5);
    expect(think(ctx("<think>a</think><think>b</think> 8"))).toBe(0.5);
    expect(think(ctx("a </think> 8"))).toBe(0);
    expect(think(ctx("<reasoning>a</reasoning><answer>8</answer>"))).toBe(0);
  });

  it("checks the reasoning/answer and boxed styles", () => {
    const tagged = formatReward({ style: "reasoning_answer", partial: 0.25 });
    expect(tagged(ctx("<reasoning>a</reasoning><answer>8</answer>"))).toBe(1);
    expect(tagged(ctx("<reasoning>a</reasoning>\n<answer> 8 </answer>\n"))).toBe(1);
    expect(tagged(ctx("<reasoning>a</reasoning><answer>8</answer> extra"))).toBe(0.25);
    expect(tagged(ctx("<reasoning>a</reasoning><answer></answer>"))).toBe(0.25);
    expect(tagged(ctx("<reasoning>a</reasoning> 8"))).toBe(0);
    expect(tagged(ctx("<think>a</think> 8"))).toBe(0);
    const boxed = formatReward({ style: "boxed" });
    expect(boxed(ctx("3+5=8 so \\boxed{8}"))).toBe(1);
    expect(boxed(ctx("\\boxed{8} and more"))).toBe(0);
  });

  it("explains bad options", () => {
    expect(() => formatReward({ style: "xml" } as never)).toThrow(/formatReward: option "style"/);
    expect(() => formatReward({ partial: 2 })).toThrow(/formatReward: option "partial"/);
  });
});

describe("lengthReward", () => {
  it("is DAPO's soft overlong punishment on the completion's token count", () => {
    const length = lengthReward({ maxLength: 10, cacheLength: 4 });
    expect([0, 6, 7, 8, 10, 11, 500].map((n) => length(ctx("", undefined, n)))).toEqual([
      0, 0, -0.25, -0.5, -1, -1, -1,
    ]);
  });

  it("checks its options when it is made", () => {
    expect(() => lengthReward({ maxLength: 10, cacheLength: 11 })).toThrow(
      'lengthReward: option "cacheLength": cacheLength must not exceed maxLength',
    );
    expect(() => lengthReward({ maxLength: 10 } as never)).toThrow(/option "cacheLength"/);
    expect(() => lengthReward({ maxLength: 1.5, cacheLength: 1 })).toThrow(/option "maxLength"/);
  });
});
