import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { classifyReasoningType, gsm8kCotDataset, parseReasoning, toCotDataset } from "../cells-lib/reasoning/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { sharedPath } from "./helpers.ts";

const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "chain-of-thought datasets from GSM8K");

describe("chain-of-thought datasets", () => {
  it("turns rows into user/assistant messages in the <think> format", () => {
    const [example] = toCotDataset([
      { prompt: "23+45?", reasoning: "3+5=8, 2+4=6", answer: "68", reasoning_type: "MATH" },
    ]);
    expect(example).toEqual({
      messages: [
        { role: "user", content: "23+45?" },
        { role: "assistant", content: "<think>\n3+5=8, 2+4=6\n</think>\n68" },
      ],
      reasoning_type: "MATH",
      answer: "68",
    });
  });

  it("renders other styles and padding, and accepts numeric answers", () => {
    const [example] = toCotDataset([{ prompt: "2+2?", reasoning: "2+2=4", answer: 4 }], {
      style: "reasoning_answer",
      pad: "",
    });
    expect(example!.messages[1]!.content).toBe("<reasoning>2+2=4</reasoning><answer>4</answer>");
    expect(example!.answer).toBe("4");
  });

  it("takes the reasoning type from the row, then the option, then the classifier", () => {
    const rows = [
      {
        prompt: "Write a python function that reverses a list.",
        reasoning: "r",
        answer: "a",
        reasoning_type: "LOGIC" as const,
      },
      { prompt: "Write a python function that reverses a list.", reasoning: "r", answer: "a" },
    ];
    expect(toCotDataset(rows).map((e) => e.reasoning_type)).toEqual(["LOGIC", "CODE"]);
    expect(toCotDataset(rows, { reasoningType: "GENERAL" }).map((e) => e.reasoning_type)).toEqual(["LOGIC", "GENERAL"]);
  });

  it("requires reasoning and names the row that lacks it", () => {
    const rows = [
      { prompt: "a?", reasoning: "r", answer: "1" },
      { prompt: "b?", answer: "2" },
    ];
    expect(() => toCotDataset(rows as never)).toThrow('toCotDataset: row 1: "reasoning" is required');
    expect(() => toCotDataset([{ prompt: "a?", reasoning: "  ", answer: "1" }])).toThrow(
      'row 0: "reasoning" must not be empty',
    );
    expect(() => toCotDataset([{ prompt: "a?", reasoning: "r" }] as never)).toThrow('row 0: "answer"');
    expect(() =>
      toCotDataset([{ prompt: "a?", reasoning: "r", answer: "1", reasoning_type: "POETRY" }] as never),
    ).toThrow('row 0: "reasoning_type"');
  });

  it("explains bad options", () => {
    expect(() => toCotDataset([], { style: "xml" } as never)).toThrow(OptionsError);
    expect(() => toCotDataset([], { style: "xml" } as never)).toThrow('toCotDataset: option "style"');
    expect(() => toCotDataset([], { shuffle: true } as never)).toThrow('unknown option "shuffle"');
  });

  it.skipIf(!gsm8kTest)("converts GSM8K rows, whose assistant turns parse back to the reference answer", () => {
    const rows = readFileSync(gsm8kTest!, "utf8")
      .trim()
      .split("\n")
      .slice(0, 50)
      .map((l) => JSON.parse(l));
    const examples = gsm8kCotDataset(rows);
    expect(examples).toHaveLength(50);
    examples.forEach((example, i) => {
      expect(example.messages[0]!.content).toBe(rows[i].question);
      expect(example.reasoning_type).toBe("MATH");
      const parsed = parseReasoning(example.messages[1]!.content);
      expect(parsed).toMatchObject({
        style: "think",
        wellFormed: true,
        answer: rows[i].answer.split("####")[1].trim().replace(/,/g, ""),
      });
      expect(parsed.reasoning).not.toContain("<<");
    });
  });
});

describe("reasoning-type heuristics", () => {
  it("labels typical prompts", () => {
    const cases: [string, string][] = [
      ["What is 23+45?", "MATH"],
      ["Tom has 3 apples and buys 5 more. How many apples does he have?", "MATH"],
      ["Simplify $\\frac{4}{6}$.", "MATH"],
      ["```js\nconst x = 1;\n```\nWhat does this print?", "CODE"],
      ["def add(a, b): return a + b -- what is wrong?", "CODE"],
      ["Write a function that sorts 10 numbers.", "CODE"],
      ["Use the weather API to get the forecast for Paris.", "TOOL_USE"],
      ["Search the web for the latest news and summarize it.", "TOOL_USE"],
      ["If all bloops are razzies and all razzies are lazzies, then are all bloops lazzies?", "LOGIC"],
      ["A knight always tells the truth and a knave always lies. Who is the knave?", "LOGIC"],
      ["Plan a weekend trip to the mountains.", "PLANNING"],
      ["Make a study schedule for my exams.", "PLANNING"],
      ["Tell me a story about a cat.", "GENERAL"],
    ];
    for (const [prompt, type] of cases) expect([prompt, classifyReasoningType(prompt)]).toEqual([prompt, type]);
  });

  it.skipIf(!gsm8kTest)("labels nearly all GSM8K questions MATH", () => {
    const rows = readFileSync(gsm8kTest!, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { question: string });
    const math = rows.filter((row) => classifyReasoningType(row.question) === "MATH").length;
    expect(math / rows.length).toBeGreaterThan(0.99);
  });
});
