/** What a reasoning concludes: the answer its own text arrives at, to compare with the answer
 * it then gives. */
import { NUMBER_SOURCE, numberValue } from "./numbers.ts";

/** A sign counts only where it cannot be subtraction, as in `extractAnswer`. */
const SIGNED_NUMBER = new RegExp(String.raw`(?:(?<![\w.)])-)?${NUMBER_SOURCE}`, "g");
/** Sentence ends; a period followed by a digit is a decimal point (`4*.25`). */
const SENTENCE_END = /[\n!?;]|\.(?!\d)/;
/** What introduces a result: an equals sign or "the answer is". */
const RESULT_MARKER = /=|\banswer\s*(?:is|:)/gi;
/** One step of column work, as the synthetic arithmetic writes it: `5+6+1=12`, `12-1-6=5`. */
const COLUMN_STEP = /^\d+(?:\s*[-+*]\s*\d+)+\s*=\s*(\d+)$/;

/**
 * Candidate conclusions, as numbers in text (empty when the reasoning has none):
 * - the reasoning's last stated result: in the last sentence that has a number, the first
 *   number after its last `=` or "answer is"; without either, that sentence's last number.
 *   (`So he made 200,000-130,000=$70,000 profit` → 70000; `…, so she has 10 left.` → 10.)
 * - for column work (reasoning that is only two or more comma-separated steps like
 *   `8+7=15, 5+6+1=12`), also the number read off the columns: the last step's result in
 *   full, then the ones digit of each earlier step, last to first (→ 125). Both readings stay
 *   candidates because `3*4=12, 12+5=17` looks like column work but is a chain ending in 17;
 *   multi-digit multiplication ends in a chain step (`282+1410=1692`) too.
 */
export function conclusions(reasoning: string): string[] {
  const last = lastResult(reasoning);
  const columns = columnReading(reasoning);
  return [last, columns].filter((c): c is string => c !== null);
}

function lastResult(reasoning: string): string | null {
  const sentence = reasoning
    .split(SENTENCE_END)
    .filter((s) => numbersIn(s).length > 0)
    .at(-1);
  if (sentence === undefined) return null;
  const marker = [...sentence.matchAll(RESULT_MARKER)].at(-1);
  const afterMarker = marker ? numbersIn(sentence.slice(marker.index + marker[0].length))[0] : undefined;
  return afterMarker ?? numbersIn(sentence).at(-1)!;
}

/** Numbers as plain decimal strings (`$1,200` → `1200`, `1 1/2` → `1.5`). */
function numbersIn(text: string): string[] {
  return [...text.matchAll(SIGNED_NUMBER)].flatMap(([literal]) => {
    const negative = literal.startsWith("-");
    const value = numberValue(negative ? literal.slice(1) : literal);
    return value === null ? [] : [String(negative ? -value : value)];
  });
}

function columnReading(reasoning: string): string | null {
  const steps = reasoning.trim().split(/\s*,\s*/);
  const results = steps.map((step) => COLUMN_STEP.exec(step)?.[1]);
  if (steps.length < 2 || results.some((r) => r === undefined)) return null;
  const numbers = results.map(Number);
  return (
    String(numbers.at(-1)) +
    numbers
      .slice(0, -1)
      .reverse()
      .map((r) => r % 10)
      .join("")
  );
}
