/** `splitDataset(rows, { seed })`: a reproducible train / validation / test split. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { seededShuffle } from "../util/random.ts";

/** Below this many rows, validation and test sets get a larger share so they stay usable. */
const SMALL_DATASET = 500;
const DEFAULT_FRACTIONS = { train: 0.8, validation: 0.15, test: 0.05 };
const SMALL_DATASET_FRACTIONS = { train: 0.7, validation: 0.2, test: 0.1 };

const Fraction = z.number().min(0).max(1);
const Fractions = z
  .object({ train: Fraction, validation: Fraction, test: Fraction })
  .strict()
  .superRefine((f, ctx) => {
    const sum = f.train + f.validation + f.test;
    if (Math.abs(sum - 1) > 1e-9)
      ctx.addIssue({ code: "custom", message: `train + validation + test must sum to 1, got ${sum}` });
  });
export type SplitFractions = z.output<typeof Fractions>;

const SplitOptions = z
  .object({
    seed: z.number().int().default(0),
    /** Default: 80/15/5, or 70/20/10 for fewer than 500 rows. */
    fractions: Fractions.optional(),
  })
  .strict();
export type SplitOptions = z.input<typeof SplitOptions>;

export interface Split<T> {
  train: T[];
  validation: T[];
  test: T[];
  sizes: { train: number; validation: number; test: number };
  fractions: SplitFractions;
}

export function splitDataset<T>(rows: readonly T[], options: SplitOptions = {}): Split<T> {
  const o = parseOptions(SplitOptions, options, "splitDataset");
  const fractions = o.fractions ?? (rows.length < SMALL_DATASET ? SMALL_DATASET_FRACTIONS : DEFAULT_FRACTIONS);
  const sizes = splitSizes(rows.length, fractions);
  const shuffled = seededShuffle(rows, o.seed);
  return {
    train: shuffled.slice(0, sizes.train),
    validation: shuffled.slice(sizes.train, sizes.train + sizes.validation),
    test: shuffled.slice(sizes.train + sizes.validation),
    sizes,
    fractions,
  };
}

/** Sizes that add up to n: each part's share rounded down, and the rows left over go to the
 * parts with the largest remainders (largest remainder method). */
function splitSizes(n: number, fractions: SplitFractions): Split<never>["sizes"] {
  // Rounded to 1e-9 so that 0.15 * 100 counts as 15, not 15.000000000000002.
  const parts = (["train", "validation", "test"] as const).map((name) => ({
    name,
    exact: Math.round(n * fractions[name] * 1e9) / 1e9,
  }));
  const sizes = { train: 0, validation: 0, test: 0 };
  for (const p of parts) sizes[p.name] = Math.floor(p.exact);
  const leftover = n - sizes.train - sizes.validation - sizes.test;
  const byRemainder = [...parts].sort((a, b) => (b.exact % 1) - (a.exact % 1));
  for (let i = 0; i < leftover; i++) sizes[byRemainder[i]!.name]++;
  return sizes;
}
