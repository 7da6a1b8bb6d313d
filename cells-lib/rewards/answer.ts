/** The final answer of a completion, as the correctness and consistency rewards read it. */
import { extractAnswer, parseNumber, parseReasoning } from "../reasoning/index.ts";

/**
 * With reasoning markers, the answer comes from the answer section only (after `</think>`,
 * inside `<answer>`, the last `\boxed{}` of the boxed style): an answer that appears only inside
 * the reasoning does not count, and neither does anything from a completion cut off before its
 * reasoning closed. Without markers, the whole completion is the answer section. A section that
 * is a box's content or one number (`\frac{1}{2}`, `-3.5`) is the answer as written; otherwise
 * `extractAnswer` picks it out (`\boxed{}`, `<answer>`, `####`, then the last number).
 */
export function finalAnswer(completion: string): string | null {
  const { style, answer } = parseReasoning(completion);
  if (!answer) return null;
  return style === "boxed" || parseNumber(answer) !== null ? answer : extractAnswer(answer);
}
