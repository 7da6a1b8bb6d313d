import { describe, expect, it } from "vitest";
import { addColumns, multiplyColumns, subtractColumns } from "../cells-lib/reasoning/columns.ts";
import {
  type ArithmeticRow,
  formatExample,
  generateArithmetic,
  OPERATIONS,
  parseReasoning,
} from "../cells-lib/reasoning/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

/** Evaluates `a+b-c*d` with the usual precedence: what a process reward will check. */
function evaluate(expression: string): number {
  return expression.split(/(?=[+-])/).reduce(
    (sum, term) =>
      sum +
      term
        .replace(/^[+-]/, "")
        .split("*")
        .map(Number)
        .reduce((p, f) => p * f, 1) *
        (term.startsWith("-") ? -1 : 1),
    0,
  );
}

const STEP = /^\d+(?:[+*-]\d+)+=\d+$/;
const all = generateArithmetic({
  count: 3000,
  seed: 7,
  difficulty: [1, 2, 3, 4, 5],
  operations: { add: 1, sub: 1, mul: 1 },
});

function digitsOf(n: number): number {
  return String(n).length;
}

/** Reads the answer off the steps the way it is written on paper: the last column's full
 * result, then the ones digit of each earlier column. */
function answerFromColumns(results: number[]): number {
  return Number(
    String(results.at(-1)) +
      results
        .slice(0, -1)
        .reverse()
        .map((r) => r % 10)
        .join(""),
  );
}

describe("synthetic arithmetic", () => {
  it("is deterministic for a seed and differs between seeds", () => {
    const options = { count: 50, seed: 3, difficulty: [1, 3, 5], operations: { add: 2, sub: 1, mul: 1 } };
    expect(generateArithmetic(options)).toEqual(generateArithmetic(options));
    expect(generateArithmetic({ ...options, seed: 4 })).not.toEqual(generateArithmetic(options));
  });

  it("writes short, regular prompts whose answers are right", () => {
    for (const row of all) {
      const match = /^(\d+)([+*-])(\d+)\?$/.exec(row.prompt);
      expect(match, row.prompt).not.toBeNull();
      expect(row.answer).toBe(String(evaluate(`${match![1]}${match![2]}${match![3]}`)));
      expect(Number(row.answer)).toBeGreaterThanOrEqual(0);
      expect(row.operation).toBe({ "+": "add", "-": "sub", "*": "mul" }[match![2]!]);
      expect(formatExample(row).completion.length).toBeLessThan(80);
    }
  });

  it("makes every reasoning step a true equation", () => {
    for (const row of all) {
      for (const step of row.reasoning.split(", ")) {
        expect(step, row.prompt).toMatch(STEP);
        const [left, right] = step.split("=");
        expect(evaluate(left!), `${row.prompt} ${step}`).toBe(Number(right));
      }
    }
  });

  it("lets the answer be read off the column steps", () => {
    for (const row of all) {
      const results = row.reasoning.split(", ").map((step) => Number(step.split("=")[1]));
      const expected = row.operation === "mul" && row.difficulty === 5 ? results.at(-1) : answerFromColumns(results);
      expect(expected, row.prompt).toBe(Number(row.answer));
    }
  });

  it("follows the difficulty levels", () => {
    const rows = (level: number) => all.filter((row) => row.difficulty === level);
    const operands = (row: ArithmeticRow) => row.prompt.slice(0, -1).split(/[+*-]/).map(Number) as [number, number];
    for (const level of [1, 2, 3, 4, 5]) {
      expect(new Set(rows(level).map((r) => r.operation))).toEqual(new Set(OPERATIONS));
      for (const row of rows(level)) {
        const [a, b] = operands(row);
        const sizes = [digitsOf(a), digitsOf(b)];
        const mulSizes = [
          [1, 1],
          [2, 1],
          [2, 1],
          [3, 1],
          [2, 2],
        ][level - 1];
        const addSizes = [
          [1, 1],
          [2, 2],
          [2, 2],
          [3, 3],
          [4, 4],
        ][level - 1];
        expect(sizes, row.prompt).toEqual(row.operation === "mul" ? mulSizes : addSizes);
        // A carry shows as a third term (`5+6+1`, `4*3+2`), a borrow as a ten added to the top digit (`13-7`).
        const carried = row.reasoning
          .split(", ")
          .some((step) => (row.operation === "sub" ? /^1\d-/.test(step) : /^\d+[+*]\d+\+\d+=/.test(step)));
        if (level === 2) expect(carried, row.prompt).toBe(false);
        if (level === 3) expect(carried, row.prompt).toBe(true);
      }
    }
  });

  it("works columns the way the examples do", () => {
    expect(addColumns(58, 67)).toEqual({ steps: ["8+7=15", "5+6+1=12"], carries: 1 });
    expect(addColumns(23, 45)).toEqual({ steps: ["3+5=8", "2+4=6"], carries: 0 });
    expect(addColumns(50, 60)).toEqual({ steps: ["0+0=0", "5+6=11"], carries: 0 });
    expect(subtractColumns(523, 167)).toEqual({ steps: ["13-7=6", "12-1-6=5", "5-1-1=3"], carries: 2 });
    expect(subtractColumns(501, 499)).toEqual({ steps: ["11-9=2", "10-1-9=0", "5-1-4=0"], carries: 2 });
    expect(multiplyColumns(47, 3)).toEqual({ steps: ["7*3=21", "4*3+2=14"], carries: 1 });
    expect(multiplyColumns(47, 36)).toEqual({
      steps: ["7*6=42", "4*6+4=28", "7*3=21", "4*3+2=14", "282+1410=1692"],
      carries: 2,
    });
    expect(() => subtractColumns(3, 5)).toThrow(/negative/);
  });

  it("weights operations and defaults to two-digit addition", () => {
    const adds = generateArithmetic({ count: 200, seed: 1 });
    expect(adds.every((row) => row.operation === "add" && (row.difficulty === 2 || row.difficulty === 3))).toBe(true);
    const mostlySub = generateArithmetic({ count: 1000, seed: 1, difficulty: 3, operations: { sub: 9, mul: 1 } });
    const subs = mostlySub.filter((row) => row.operation === "sub").length;
    expect(subs).toBeGreaterThan(850);
    expect(subs).toBeLessThan(950);
    expect(mostlySub.some((row) => row.operation === "add")).toBe(false);
  });

  it("formats examples in each reasoning style", () => {
    const row = { prompt: "23+45?", reasoning: "3+5=8, 2+4=6", answer: "68" };
    expect(formatExample(row)).toEqual({ prompt: "23+45?", completion: "<think> 3+5=8, 2+4=6 </think> 68" });
    expect(formatExample(row, "reasoning_answer").completion).toBe(
      "<reasoning> 3+5=8, 2+4=6 </reasoning> <answer> 68 </answer>",
    );
    expect(formatExample(row, "boxed").completion).toBe("3+5=8, 2+4=6 \\boxed{68}");
    for (const r of all.slice(0, 100))
      expect(parseReasoning(formatExample(r).completion)).toMatchObject({
        reasoning: r.reasoning,
        answer: r.answer,
        wellFormed: true,
      });
  });

  it("explains bad options", () => {
    expect(() => generateArithmetic({ count: 1, difficulty: 6 })).toThrow(OptionsError);
    expect(() => generateArithmetic({ count: 1, difficulty: 6 })).toThrow('generateArithmetic: option "difficulty"');
    expect(() => generateArithmetic({ count: 1, operations: { add: 0 } })).toThrow(
      "at least one operation needs a positive weight",
    );
    expect(() => generateArithmetic({ count: 1, operations: { div: 1 } } as never)).toThrow('unknown option "div"');
    expect(() => generateArithmetic({ count: -1 })).toThrow('option "count"');
  });
});
