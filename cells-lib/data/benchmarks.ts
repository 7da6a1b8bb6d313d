/** Loaders for the benchmark layouts in shared/data: each row gains `reference`, the answer a
 * model's final answer is graded against. */
import { z } from "zod";
import { readRows } from "./read.ts";
import type { LoadedRows } from "./types.ts";
import { validateRows } from "./validate.ts";

/** GSM8K solutions end in "#### <number>"; the number may contain thousands separators. */
const FINAL_ANSWER = /####\s*(-?[\d,]*\d(?:\.\d+)?)\s*$/;

export const Gsm8kProblem = z
  .object({
    question: z.string(),
    answer: z.string().regex(FINAL_ANSWER, 'expected a solution ending in "#### <number>"'),
  })
  .transform((r) => ({ ...r, reference: FINAL_ANSWER.exec(r.answer)![1]!.replaceAll(",", "") }));
export type Gsm8kProblem = z.output<typeof Gsm8kProblem>;

export const Math500Problem = z
  .object({
    problem: z.string(),
    solution: z.string(),
    answer: z.string(),
    subject: z.string(),
    level: z.number().int(),
    unique_id: z.string(),
  })
  .transform(({ answer, ...rest }) => ({ ...rest, reference: answer }));
export type Math500Problem = z.output<typeof Math500Problem>;

/** GSM8K ({question, answer}); `reference` is the number after "####", commas removed. */
export async function loadGsm8k(file: string): Promise<LoadedRows<Gsm8kProblem>> {
  return { file, rows: validateRows(file, await readRows(file), Gsm8kProblem, "GSM8K rows {question, answer}") };
}

/** MATH-500 (problem, solution, answer, subject, level, unique_id); `reference` is the answer field. */
export async function loadMath500(file: string): Promise<LoadedRows<Math500Problem>> {
  const what = "MATH-500 rows {problem, solution, answer, subject, level, unique_id}";
  return { file, rows: validateRows(file, await readRows(file), Math500Problem, what) };
}
