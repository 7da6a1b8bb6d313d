/** Final answers: pulling one out of a completion or solution, and deciding whether it matches
 * a reference (what correctness rewards and evaluations score). */
import { findBoxes } from "./latex.ts";
import { normalizeAnswer, parseNumber } from "./normalize.ts";

/** Relative tolerance for numeric equality: tight enough to be exact for answers, loose
 * enough that 1/3 and 0.333…3 (as printed to full double precision) agree. */
const RELATIVE_TOLERANCE = 1e-9;

/** The final answer in a text, trying in order: the last `\boxed{…}`/`\fbox{…}`, the last
 * `<answer>` block (closed or not), the last `#### …` line (GSM8K), and the last number
 * (thousands separators removed). null when none gives anything. */
export function extractAnswer(text: string): string | null {
  return boxedAnswer(text) ?? taggedAnswer(text) ?? hashesAnswer(text) ?? lastNumber(text);
}

/** Numeric equality when both sides are numbers (1/2, 0.5, `\frac12`), otherwise equality of
 * normalized strings (LaTeX answers such as `\left( 3, \frac{\pi}{2} \right)`). */
export function answersMatch(predicted: string | null | undefined, reference: string): boolean {
  if (predicted == null) return false;
  const a = parseNumber(predicted);
  const b = parseNumber(reference);
  if (a !== null && b !== null) return Math.abs(a - b) <= RELATIVE_TOLERANCE * Math.max(Math.abs(a), Math.abs(b));
  const normalized = normalizeAnswer(predicted);
  return normalized !== "" && normalized === normalizeAnswer(reference);
}

function nonEmpty(s: string | undefined): string | null {
  const trimmed = s?.trim();
  return trimmed ? trimmed : null;
}

function boxedAnswer(text: string): string | null {
  return nonEmpty(
    findBoxes(text)
      .filter((box) => box.closed)
      .at(-1)?.content,
  );
}

function taggedAnswer(text: string): string | null {
  const at = text.lastIndexOf("<answer>");
  if (at < 0) return null;
  const rest = text.slice(at + "<answer>".length);
  const close = rest.indexOf("</answer>");
  return nonEmpty(close < 0 ? rest : rest.slice(0, close));
}

function hashesAnswer(text: string): string | null {
  return nonEmpty([...text.matchAll(/####([^\n]*)/g)].at(-1)?.[1]);
}

/** A minus is a sign only where it cannot be subtraction (not after a word, digit or `)`). */
const NUMBER = /(?<![\w.)])-?(?:\d+\/\d+|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)/g;

function lastNumber(text: string): string | null {
  return [...text.matchAll(NUMBER)].at(-1)?.[0].replace(/,/g, "") ?? null;
}
