/** Canonical forms of final answers, so that `$1,000.`, `1000` and `\text{1000}` compare equal,
 * and exact numeric values of answers written as decimals, fractions or `\frac`s. */

/** Rewrites an answer into a canonical string: drops `$`, `\text{}`-style wrappers, `\left`/
 * `\right`, thin spaces (`\!`, `\,`), degree marks, percent signs (references give percentages
 * as bare numbers), all whitespace, a leading `+`, a trailing period and a leading `x=`;
 * spells `\dfrac`/`\tfrac` as `\frac` and braces one-token arguments (`\frac12` →
 * `\frac{1}{2}`, `\sqrt2` → `\sqrt{2}`); removes thousands separators from a lone number. */
export function normalizeAnswer(answer: string): string {
  let s = answer
    .trim()
    .replace(/−/g, "-")
    .replace(/\\[dt]frac(?![a-zA-Z])/g, "\\frac")
    .replace(/\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}/g, "$1")
    .replace(/\\(?:left|right)(?![a-zA-Z])/g, "")
    // `(?<!\\)` keeps a matrix row break (`\\`) from reading as `\` plus a spacing command.
    .replace(/(?<!\\)\\[!,;: ]/g, "")
    .replace(/\{,\}/g, ",")
    .replace(/\\?\$/g, "")
    .replace(/\^\s*\{?\s*\\circ\s*\}?|°/g, "")
    .replace(/\\?%/g, "")
    .replace(/\\frac\s*([^\s{\\])/g, "\\frac{$1}")
    .replace(/\\frac\{([^{}]*)\}\s*([^\s{\\])/g, "\\frac{$1}{$2}")
    .replace(/\\sqrt\s*([^\s{\\[])/g, "\\sqrt{$1}")
    .replace(/\s+/g, "")
    .replace(/\.$/, "")
    .replace(/^\+/, "");
  if (/^[a-zA-Z]=[^=]*$/.test(s)) s = s.slice(2);
  if (/^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(s)) s = s.replace(/,/g, "");
  return s;
}

const DECIMAL = String.raw`(?:\d+(?:\.\d*)?|\.\d+)`;
const PLAIN = new RegExp(`^-?${DECIMAL}$`);
const SLASH = new RegExp(`^(-?)(${DECIMAL})/(${DECIMAL})$`);
const FRAC = new RegExp(String.raw`^(-?)\\frac\{(-?${DECIMAL})\}\{(-?${DECIMAL})\}$`);
const MIXED = /^(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$/;

/** The value of a numeric answer: integers, decimals, `a/b`, `\frac{a}{b}` (with a sign in
 * front or in the numerator) and mixed numbers (`1\frac{4}{5}`, MATH's convention). null for
 * anything else, including a zero denominator. */
export function parseNumber(answer: string): number | null {
  const s = normalizeAnswer(answer);
  if (PLAIN.test(s)) return Number(s);
  const ratio = SLASH.exec(s) ?? FRAC.exec(s);
  if (ratio) return signed(ratio[1]!, divide(Number(ratio[2]), Number(ratio[3])));
  const mixed = MIXED.exec(s);
  if (mixed) {
    const part = divide(Number(mixed[3]), Number(mixed[4]));
    return signed(mixed[1]!, part === null ? null : Number(mixed[2]) + part);
  }
  return null;
}

function divide(numerator: number, denominator: number): number | null {
  return denominator === 0 ? null : numerator / denominator;
}

function signed(sign: string, value: number | null): number | null {
  return value === null ? null : sign === "-" ? -value : value;
}
