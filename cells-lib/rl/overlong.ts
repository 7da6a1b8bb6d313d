/** DAPO's two ways to handle completions cut off at the generation limit (arXiv 2503.14476). */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";

export const OverlongOptions = z
  .object({
    /** L_max: lengths above it get the full −1 penalty. */
    maxLength: z.number().int().positive(),
    /** L_cache: the width of the soft buffer just below maxLength. */
    cacheLength: z.number().int().positive(),
  })
  .strict()
  .refine((o) => o.cacheLength <= o.maxLength, {
    message: "cacheLength must not exceed maxLength",
    path: ["cacheLength"],
  });
export type OverlongOptions = z.input<typeof OverlongOptions>;

/** Soft length penalty, added to the reward: 0 up to L_max − L_cache, then falling linearly
 * to −1 at L_max, and −1 beyond. */
export function overlongPenalty(length: number, options: OverlongOptions): number {
  const o = parseOptions(OverlongOptions, options, "overlongPenalty");
  if (!Number.isFinite(length) || length < 0)
    throw new Error(`overlongPenalty: length must be finite and ≥ 0, got ${length}`);
  const free = o.maxLength - o.cacheLength;
  if (length <= free) return 0;
  if (length <= o.maxLength) return (free - length) / o.cacheLength;
  return -1;
}

/** Per-completion loss weights that drop truncated completions: a cut-off answer is not
 * necessarily wrong, so its reward is noise. 1 keeps a completion, 0 masks it out. */
export function overlongMask(truncated: readonly boolean[]): number[] {
  return truncated.map((t) => (t ? 0 : 1));
}
