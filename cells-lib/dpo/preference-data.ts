/** A preference set generated from synthetic arithmetic, to test DPO with: each row pairs the
 * correct worked completion (`chosen`, exactly `formatExample`'s) with a wrong one
 * (`rejected`) that differs from it in one of three ways:
 *
 *   "step"    one step's result has a wrong last digit, and the final answer carries the same
 *             wrong digit where the step feeds it (add/sub; elsewhere a random answer digit is
 *             changed): `8+7=16, 5+6+1=12 </think> 126`, looking consistent but wrong;
 *   "answer"  the steps are right, the final answer has one wrong digit;
 *   "format"  the content is right, the markup is broken (closing tag missing, opening tag
 *             missing, no tags, or the answer inside the reasoning block).
 *
 * Deterministic for a seed; the problems are `generateArithmetic`'s for the same options. */
import { z } from "zod";
import { checkFormat, formatReasoning, REASONING_STYLES, type ReasoningStyle } from "../reasoning/markers.ts";
import {
  ArithmeticProblemShape,
  type ArithmeticRow,
  formatExample,
  generateArithmetic,
  Weight,
} from "../reasoning/synthetic.ts";
import { parseOptions } from "../util/options.ts";
import { mulberry32, pickWeighted, type Random, randomInt } from "../util/random.ts";

export const CORRUPTIONS = ["step", "answer", "format"] as const;
export type Corruption = (typeof CORRUPTIONS)[number];

export interface ArithmeticPreference {
  prompt: string;
  /** The correct completion (`formatExample`). */
  chosen: string;
  /** A wrong completion. */
  rejected: string;
  /** The correct final answer. */
  reference: string;
  /** How `rejected` was made wrong. */
  corruption: Corruption;
  difficulty: number;
  operation: ArithmeticRow["operation"];
}

const ArithmeticPreferenceOptions = z
  .object({
    /** count, seed, difficulty and operations: as in generateArithmetic. */
    ...ArithmeticProblemShape,
    /** Relative weights of the ways to make `rejected` wrong; a missing one has weight 0. */
    corruptions: z
      .object({ step: Weight, answer: Weight, format: Weight })
      .strict()
      .refine((w) => w.step + w.answer + w.format > 0, "at least one corruption needs a positive weight")
      .default({ step: 1, answer: 1, format: 1 }),
    style: z.enum(REASONING_STYLES).default("think"),
  })
  .strict();
export type ArithmeticPreferenceOptions = z.input<typeof ArithmeticPreferenceOptions>;

export function arithmeticPreferences(options: ArithmeticPreferenceOptions): ArithmeticPreference[] {
  const o = parseOptions(ArithmeticPreferenceOptions, options, "arithmeticPreferences");
  const problems = generateArithmetic({
    count: o.count,
    seed: o.seed,
    difficulty: o.difficulty,
    operations: o.operations,
  });
  // A stream of its own, so the problems are generateArithmetic's for the same seed.
  const random = mulberry32((o.seed ^ 0x5bd1e995) >>> 0);
  const kinds = CORRUPTIONS.map((c) => [c, o.corruptions[c]] as const);
  return problems.map((row) => {
    const corruption = pickWeighted(random, kinds);
    const { prompt, completion: chosen } = formatExample(row, o.style);
    const rejected = corrupt(random, row, corruption, o.style);
    return {
      prompt,
      chosen,
      rejected,
      reference: row.answer,
      corruption,
      difficulty: row.difficulty,
      operation: row.operation,
    };
  });
}

function corrupt(random: Random, row: ArithmeticRow, corruption: Corruption, style: ReasoningStyle): string {
  const pad = { pad: " " };
  if (corruption === "answer")
    return formatReasoning({ reasoning: row.reasoning, answer: changeDigit(random, row.answer) }, style, pad);
  if (corruption === "step") return formatReasoning(wrongStep(random, row), style, pad);
  const broken = brokenFormat(random, formatReasoning(row, style, pad), row, style);
  if (checkFormat(broken, style).ok)
    throw new Error(`arithmeticPreferences: internal error: "${broken}" is still well formed`);
  return broken;
}

/** One digit of `n` (a non-negative integer's digits) replaced by a different digit, never
 * giving a leading zero. `at` picks the digit, counted from the right (default: any). */
function changeDigit(random: Random, n: string, at?: number, to?: number): string {
  const digits = [...n];
  const index = digits.length - 1 - (at ?? randomInt(random, 0, digits.length - 1));
  const current = Number(digits[index]);
  const allowed = Array.from({ length: 10 }, (_, d) => d).filter(
    (d) => d !== current && !(index === 0 && d === 0 && digits.length > 1),
  );
  digits[index] = String(
    to !== undefined && allowed.includes(to) ? to : allowed[randomInt(random, 0, allowed.length - 1)]!,
  );
  return digits.join("");
}

/** A step whose result has a wrong last digit, and a final answer that repeats the mistake. */
function wrongStep(random: Random, row: ArithmeticRow): { reasoning: string; answer: string } {
  const steps = row.reasoning.split(", ");
  const i = randomInt(random, 0, steps.length - 1);
  const [lhs, result] = steps[i]!.split("=") as [string, string];
  const wrong = changeDigit(random, result, 0);
  steps[i] = `${lhs}=${wrong}`;
  const d = Number(wrong.at(-1));
  // Column work (add, sub): step i writes the answer's digit i (counted from the right).
  const feeds = row.operation !== "mul" && i < row.answer.length && row.answer.at(-1 - i) === result.at(-1);
  const answer = feeds ? changeDigit(random, row.answer, i, d) : changeDigit(random, row.answer);
  return { reasoning: steps.join(", "), answer };
}

const TAGS: Record<ReasoningStyle, [string, string]> = {
  think: ["<think>", "</think>"],
  thinking: ["<thinking>", "</thinking>"],
  reasoning_answer: ["<reasoning>", "</reasoning>"],
  boxed: ["\\boxed{", "}"],
};

function brokenFormat(random: Random, text: string, row: ArithmeticRow, style: ReasoningStyle): string {
  const [open, close] = TAGS[style];
  if (style === "boxed") {
    // No box, or an unclosed one.
    return random() < 0.5 ? `${row.reasoning} ${row.answer}` : text.slice(0, -1);
  }
  const tidy = (s: string) => s.replace(/\s+/g, " ").trim();
  switch (randomInt(random, 0, 3)) {
    case 0: // closing tag missing
      return tidy(text.replace(close, ""));
    case 1: // opening tag missing
      return tidy(text.replace(open, ""));
    case 2: // no markup at all
      return `${row.reasoning} ${row.answer}`;
    default: // the answer inside the reasoning block, nothing after it
      return `${open} ${row.reasoning} ${row.answer} ${close}`;
  }
}
