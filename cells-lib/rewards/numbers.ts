/** Number literals as reasoning writes them: `$1,200`, `3.5`, `.25`, `3/4` and the mixed number
 * `1 1/2`. A fraction written without spaces is one literal, so `1 1/2 / 1/2` reads as
 * (1½) ÷ (½) the way it is meant; but not before `%`: `168/20%` is 168 ÷ 20%. */

/** Unsigned; never glued to a word (`2L`, `60g`, `x2`) or to more digits, except for a times
 * sign before another operand (`$2000x 10/100`, but not the variable in `4x-13`). */
const NUMBER_FORMS = String.raw`\d+ \d+/\d+(?!%)|\d+/\d+(?!%)|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+`;
export const NUMBER_SOURCE = String.raw`(?<![\w.])\$?(?:${NUMBER_FORMS})(?!(?![xX]\s*(?:[\d$(]|\.\d))\w|\.\d)`;

/** The value of a literal matched by NUMBER_SOURCE; null for a zero denominator. */
export function numberValue(literal: string): number | null {
  const s = literal.replace(/[$,]/g, "");
  const mixed = /^(\d+) (\d+)\/(\d+)$/.exec(s);
  if (mixed) return fraction(mixed[2]!, mixed[3]!, Number(mixed[1]));
  const ratio = /^(\d+)\/(\d+)$/.exec(s);
  if (ratio) return fraction(ratio[1]!, ratio[2]!, 0);
  return Number(s);
}

function fraction(numerator: string, denominator: string, whole: number): number | null {
  return Number(denominator) === 0 ? null : whole + Number(numerator) / Number(denominator);
}

/** Fractions and mixed numbers are computed, not just stated: `2/2 = 1` is a step to check. */
export function isComputed(literal: string): boolean {
  return literal.includes("/");
}
