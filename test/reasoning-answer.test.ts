import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { answersMatch, extractAnswer, normalizeAnswer, parseNumber } from "../cells-lib/reasoning/index.ts";
import { sharedPath } from "./helpers.ts";

const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "answer extraction on GSM8K's gold solutions");
const math500Test = sharedPath("data/math500/test.jsonl", "answer extraction on MATH-500's gold solutions");

function readJsonl<T>(file: string): T[] {
  return readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as T);
}

describe("answer extraction", () => {
  it("prefers the last box, then an answer block, then ####, then the last number", () => {
    expect(extractAnswer("\\boxed{1} then <answer>2</answer> #### 3 and 4 and \\boxed{5}")).toBe("5");
    expect(extractAnswer("<answer>2</answer> #### 3 and 4")).toBe("2");
    expect(extractAnswer("#### 3\nand 4")).toBe("3");
    expect(extractAnswer("3 and 4")).toBe("4");
  });

  it("handles the tricky cases", () => {
    expect(extractAnswer("The answer is 1,234.")).toBe("1234");
    expect(extractAnswer("-3")).toBe("-3");
    expect(extractAnswer("so x = -3.5.")).toBe("-3.5");
    expect(extractAnswer("5-3=2")).toBe("2");
    expect(extractAnswer("half is 3/4")).toBe("3/4");
    expect(extractAnswer("Nested: \\boxed{\\frac{a^{2}}{\\sqrt{b}}} done")).toBe("\\frac{a^{2}}{\\sqrt{b}}");
    expect(extractAnswer("\\fbox{7}")).toBe("7");
    expect(extractAnswer("escaped braces \\boxed{\\{1,2\\}}")).toBe("\\{1,2\\}");
    expect(extractAnswer("<think>7*8=56</think><answer>56")).toBe("56");
    expect(extractAnswer("no number here")).toBeNull();
    expect(extractAnswer("")).toBeNull();
  });

  it("skips empty and unclosed boxes", () => {
    expect(extractAnswer("\\boxed{} 12")).toBe("12");
    expect(extractAnswer("\\boxed{4} and \\boxed{5")).toBe("4");
  });
});

describe("answer normalization and numbers", () => {
  it("normalizes LaTeX and formatting noise", () => {
    expect(normalizeAnswer(" $1,000$. ")).toBe("1000");
    expect(normalizeAnswer("\\$32,\\!348")).toBe("32348");
    expect(normalizeAnswer("11,\\! 111,\\! 111,\\! 100")).toBe("11111111100");
    expect(normalizeAnswer("\\text{(C)}")).toBe("(C)");
    expect(normalizeAnswer("\\left( 3, \\dfrac{\\pi}{2} \\right)")).toBe("(3,\\frac{\\pi}{2})");
    expect(normalizeAnswer("+5")).toBe("5");
    expect(normalizeAnswer("\\tfrac 59")).toBe("\\frac{5}{9}");
    expect(normalizeAnswer("\\frac{270}7")).toBe("\\frac{270}{7}");
    expect(normalizeAnswer("11\\sqrt2")).toBe("11\\sqrt{2}");
    expect(normalizeAnswer("30^\\circ")).toBe("30");
    expect(normalizeAnswer("50\\%")).toBe("50");
    expect(normalizeAnswer("x = 5")).toBe("5");
    expect(normalizeAnswer("3, 5, 7")).toBe("3,5,7");
    expect(normalizeAnswer("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}")).toBe(
      "\\begin{pmatrix}1/5\\\\-18/5\\end{pmatrix}",
    );
  });

  it("parses integers, decimals, fractions and mixed numbers", () => {
    expect(parseNumber("42")).toBe(42);
    expect(parseNumber("-3")).toBe(-3);
    expect(parseNumber(".35625")).toBe(0.35625);
    expect(parseNumber("1,234.5")).toBe(1234.5);
    expect(parseNumber("3/4")).toBe(0.75);
    expect(parseNumber("\\frac{3}{4}")).toBe(0.75);
    expect(parseNumber("\\frac34")).toBe(0.75);
    expect(parseNumber("-\\frac{1}{2}")).toBe(-0.5);
    expect(parseNumber("\\frac{-1}{2}")).toBe(-0.5);
    expect(parseNumber("1\\frac{4}{5}")).toBeCloseTo(1.8, 12);
    expect(parseNumber("25\\%")).toBe(25);
    expect(parseNumber("1/0")).toBeNull();
    expect(parseNumber("\\sqrt{2}")).toBeNull();
    expect(parseNumber("1,-2")).toBeNull();
  });

  it("matches numbers by value and everything else by normalized text", () => {
    for (const half of ["1/2", "0.5", "\\frac12", "\\frac{1}{2}", "\\dfrac{1}{2}", "$0.50$"])
      expect(answersMatch(half, "\\frac{1}{2}")).toBe(true);
    expect(answersMatch(extractAnswer("\\boxed{\\frac{3}{4}}"), "0.75")).toBe(true);
    expect(answersMatch("1234", "1,234")).toBe(true);
    expect(answersMatch("0.3333", "\\frac13")).toBe(false);
    expect(answersMatch("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)")).toBe(true);
    expect(answersMatch("(C)", "\\text{(C)}")).toBe(true);
    expect(answersMatch("p-q", "p - q")).toBe(true);
    expect(answersMatch("q-p", "p - q")).toBe(false);
    expect(answersMatch(null, "3")).toBe(false);
    expect(answersMatch("", "")).toBe(false);
  });
});

describe("scoring gold solutions gives 100%", () => {
  it.skipIf(!gsm8kTest)("GSM8K test: every solution's extracted answer matches the number after ####", () => {
    const rows = readJsonl<{ question: string; answer: string }>(gsm8kTest!);
    expect(rows).toHaveLength(1319);
    const wrong = rows.filter(
      (row) => !answersMatch(extractAnswer(row.answer), row.answer.split("####").at(-1)!.trim()),
    );
    expect(wrong).toEqual([]);
  });

  it.skipIf(!math500Test)("MATH-500: every solution's extracted answer matches the reference answer", () => {
    const rows = readJsonl<{ solution: string; answer: string }>(math500Test!);
    expect(rows).toHaveLength(500);
    const wrong = rows.filter((row) => !answersMatch(extractAnswer(row.solution), row.answer));
    expect(wrong).toEqual([]);
  });

  it.skipIf(!math500Test)(
    "MATH-500: numeric answers also match their decimal values, and different answers do not match",
    () => {
      const rows = readJsonl<{ answer: string }>(math500Test!);
      const numeric = rows.filter((row) => parseNumber(row.answer) !== null);
      expect(numeric.length).toBeGreaterThan(250);
      for (const row of numeric) expect(answersMatch(String(parseNumber(row.answer)), row.answer)).toBe(true);
      const distinct = [...new Set(rows.map((row) => normalizeAnswer(row.answer)))];
      const collisions = distinct.flatMap((a, i) =>
        distinct
          .slice(i + 1)
          .filter((b) => answersMatch(a, b))
          .map((b) => [a, b]),
      );
      expect(collisions).toEqual([]);
    },
  );
});
