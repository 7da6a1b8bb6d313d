/** Synthetic arithmetic for training tiny models (stories260K: 512-token vocabulary, 512-token
 * context), so prompts and reasoning are short and regular: prompt `58+67?`, reasoning
 * `8+7=15, 5+6+1=12`, answer `125`. Deterministic for a seed.
 *
 * Difficulty levels (every level has all three operations):
 *   1: one-digit operands (`3+5`, `8-3`, `3*4`)
 *   2: two-digit operands (× one digit for mul) with no carry or borrow between columns
 *      (the last column may still overflow: `81*8` → `1*8=8, 8*8=64`)
 *   3: two-digit operands (× one digit for mul) with at least one carry or borrow
 *   4: three-digit operands (× one digit for mul)
 *   5: four-digit operands for add/sub, two-digit × two-digit for mul
 * Subtraction never goes below zero. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { mulberry32, pickWeighted, type Random, randomInt } from "../util/random.ts";
import { addColumns, multiplyColumns, subtractColumns, type Worked } from "./columns.ts";
import { formatReasoning, type ReasoningParts, type ReasoningStyle } from "./markers.ts";

export const OPERATIONS = ["add", "sub", "mul"] as const;
export type Operation = (typeof OPERATIONS)[number];

export interface ArithmeticRow extends ReasoningParts {
  prompt: string;
  difficulty: number;
  operation: Operation;
}

const Level = z.number().int().min(1).max(5);
/** A relative weight in an option of weights by name; a missing name has weight 0. */
export const Weight = z.number().min(0).default(0);

/** The options that choose the problems: `generateArithmetic`'s, and the start of the options of
 * sets built on it (`arithmeticPreferences`). */
export const ArithmeticProblemShape = {
  count: z.number().int().min(0),
  seed: z.number().int().default(0),
  /** A level, or a list to draw from uniformly (repeat a level to weight it). Default: two-digit
   * problems with and without carries, the task the demo model learns first. */
  difficulty: z.union([Level, z.array(Level).min(1)]).default([2, 3]),
  /** Relative weights; a missing operation has weight 0. Default: addition only. */
  operations: z
    .object({ add: Weight, sub: Weight, mul: Weight })
    .strict()
    .refine((w) => w.add + w.sub + w.mul > 0, "at least one operation needs a positive weight")
    .default({ add: 1, sub: 0, mul: 0 }),
};

const ArithmeticOptions = z.object(ArithmeticProblemShape).strict();
export type ArithmeticOptions = z.input<typeof ArithmeticOptions>;

export function generateArithmetic(options: ArithmeticOptions): ArithmeticRow[] {
  const o = parseOptions(ArithmeticOptions, options, "generateArithmetic");
  const random = mulberry32(o.seed);
  const levels = typeof o.difficulty === "number" ? [o.difficulty] : o.difficulty;
  const weights = OPERATIONS.map((op) => [op, o.operations[op]] as const);
  return Array.from({ length: o.count }, () => {
    const difficulty = levels[randomInt(random, 0, levels.length - 1)]!;
    return problem(random, pickWeighted(random, weights), difficulty);
  });
}

/** A row as a prompt and a completion in a reasoning style, padded with spaces the way the
 * demo model was trained: `<think> 3+5=8, 2+4=6 </think> 68`. */
export function formatExample(
  row: ReasoningParts & { prompt: string },
  style: ReasoningStyle = "think",
): { prompt: string; completion: string } {
  return { prompt: row.prompt, completion: formatReasoning(row, style, { pad: " " }) };
}

const SYMBOL: Record<Operation, string> = { add: "+", sub: "-", mul: "*" };
const WORK: Record<Operation, (a: number, b: number) => Worked> = {
  add: addColumns,
  sub: subtractColumns,
  mul: multiplyColumns,
};
const VALUE: Record<Operation, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
};

function problem(random: Random, operation: Operation, difficulty: number): ArithmeticRow {
  // Rejection sampling: every level's condition holds for a good share of draws.
  for (;;) {
    const [a, b] = operands(random, operation, difficulty);
    const worked = WORK[operation](a, b);
    if ((difficulty === 2 && worked.carries > 0) || (difficulty === 3 && worked.carries === 0)) continue;
    return {
      prompt: `${a}${SYMBOL[operation]}${b}?`,
      reasoning: worked.steps.join(", "),
      answer: String(VALUE[operation](a, b)),
      difficulty,
      operation,
    };
  }
}

function withDigits(random: Random, n: number): number {
  return n === 1 ? randomInt(random, 1, 9) : randomInt(random, 10 ** (n - 1), 10 ** n - 1);
}

const ADD_SUB_DIGITS = [1, 2, 2, 3, 4];
const MUL_DIGITS: [number, number][] = [
  [1, 1],
  [2, 1],
  [2, 1],
  [3, 1],
  [2, 2],
];

function operands(random: Random, operation: Operation, difficulty: number): [number, number] {
  if (operation === "mul") {
    const [da, db] = MUL_DIGITS[difficulty - 1]!;
    const a = withDigits(random, da);
    // Beyond level 1, ×1 teaches nothing: one-digit multipliers are 2..9.
    const b = db === 1 && difficulty > 1 ? randomInt(random, 2, 9) : withDigits(random, db);
    return [a, b];
  }
  const n = ADD_SUB_DIGITS[difficulty - 1]!;
  const a = withDigits(random, n);
  const b = withDigits(random, n);
  return operation === "sub" && a < b ? [b, a] : [a, b];
}
