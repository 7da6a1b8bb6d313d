import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { answersMatch, extractAnswer, gsm8kToCot } from "../cells-lib/reasoning/index.ts";
import { sharedPath } from "./helpers.ts";

const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "GSM8K solutions as chain of thought");
const gsm8kTrain = sharedPath("data/gsm8k/train.jsonl", "GSM8K solutions as chain of thought");

function readGsm8k(file: string | undefined): { question: string; answer: string }[] {
  return file === undefined
    ? []
    : readFileSync(file, "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
}

describe.skipIf(!gsm8kTest || !gsm8kTrain)("GSM8K solutions as chain of thought", () => {
  const test = readGsm8k(gsm8kTest);

  it("drops the calculator notes, keeps the visible text and splits off the answer", () => {
    expect(gsm8kToCot(test[0]!.answer)).toEqual({
      reasoning: "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day at the farmer’s market.",
      answer: "18",
    });
    expect(gsm8kToCot(test[2]!.answer)).toEqual({
      reasoning: [
        "The cost of the house and repairs came out to 80,000+50,000=$130,000",
        "He increased the value of the house by 80,000*1.5=120,000",
        "So the new value of the house is 120,000+80,000=$200,000",
        "So he made a profit of 200,000-130,000=$70,000",
      ].join("\n"),
      answer: "70000",
    });
  });

  it("removes thousands separators from the answer", () => {
    const withComma = test.find((row) => /####\s*\d{1,3},\d{3}/.test(row.answer))!;
    const { answer } = gsm8kToCot(withComma.answer);
    expect(answer).toMatch(/^\d+$/);
    expect(answersMatch(answer, withComma.answer.split("####")[1]!.trim())).toBe(true);
  });

  it("gives clean reasoning and a numeric answer for every train and test row", () => {
    const rows = [...test, ...readGsm8k(gsm8kTrain)];
    const bad = rows.filter((row) => {
      const { reasoning, answer } = gsm8kToCot(row.answer);
      return (
        /<<|>>|####/.test(reasoning) ||
        !reasoning ||
        !/^-?\d+(\.\d+)?$/.test(answer) ||
        !answersMatch(extractAnswer(row.answer), answer)
      );
    });
    expect(bad).toEqual([]);
  });

  it("names the problem when the answer line is missing", () => {
    expect(() => gsm8kToCot("It is 4.")).toThrow(/no "#### answer" line/);
  });
});
