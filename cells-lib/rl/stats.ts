/** The few statistics the RL code needs, with the conventions TRL uses: std is torch.std's
 * default (unbiased, n − 1), and "zero std" means torch.isclose(std, 0) (|std| ≤ 1e-8). */

/** Mean of a non-empty list (NaN for an empty one; callers decide what "no values" means). */
export function mean(xs: readonly number[]): number {
  let sum = 0;
  for (const x of xs) sum += x;
  return sum / xs.length;
}

/** Unbiased (n − 1) standard deviation; 0 with fewer than two values, as TRL does for a
 * single generation, so that one lone sample gets advantage 0 rather than NaN. */
export function sampleStd(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  let squares = 0;
  for (const x of xs) squares += (x - m) ** 2;
  return Math.sqrt(squares / (xs.length - 1));
}

const TIE_TOLERANCE = 1e-8;

/** True when the values carry no ranking signal: fewer than two, or all (numerically) equal. */
export function allTie(xs: readonly number[]): boolean {
  return sampleStd(xs) <= TIE_TOLERANCE;
}

/** The non-null entries, in order. */
export function present(xs: readonly (number | null)[]): number[] {
  return xs.filter((x): x is number => x !== null);
}
