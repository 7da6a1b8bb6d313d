/** PPO's advantage estimate over one completion's tokens (GAE, arXiv 1506.02438) and the
 * batch whitening applied to it before the policy loss. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { mean } from "./stats.ts";

const GaeOptions = z
  .object({
    gamma: z.number().min(0).max(1).default(1),
    lambda: z.number().min(0).max(1).default(0.95),
  })
  .strict();
export type GaeOptions = z.input<typeof GaeOptions>;

export interface GaeResult {
  advantages: number[];
  /** advantages + values: the value head's regression targets. */
  returns: number[];
}

/** δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}, from the last token back; the
 * value after the last token is 0 because the completion ends there. */
export function gae(rewards: readonly number[], values: readonly number[], options?: GaeOptions): GaeResult {
  const o = parseOptions(GaeOptions, options, "gae");
  if (rewards.length !== values.length)
    throw new Error(
      `gae: ${rewards.length} rewards but ${values.length} values; both need one entry per completion token`,
    );
  const advantages = new Array<number>(rewards.length);
  let next = 0;
  let nextValue = 0;
  for (let t = rewards.length - 1; t >= 0; t--) {
    const delta = rewards[t]! + o.gamma * nextValue - values[t]!;
    next = delta + o.gamma * o.lambda * next;
    advantages[t] = next;
    nextValue = values[t]!;
  }
  return { advantages, returns: advantages.map((a, t) => a + values[t]!) };
}

const WhitenOptions = z
  .object({
    /** false adds the mean back, only rescaling (TRL does that for rewards). */
    shiftMean: z.boolean().default(true),
  })
  .strict();
export type WhitenOptions = z.input<typeof WhitenOptions>;

/** (x − mean)/sqrt(var + 1e-8) with unbiased variance, as TRL's masked_whiten; pass every
 * token's advantage of the batch at once. Fewer than two values have variance 0. */
export function whiten(xs: readonly number[], options?: WhitenOptions): number[] {
  const o = parseOptions(WhitenOptions, options, "whiten");
  if (xs.length === 0) return [];
  const m = mean(xs);
  const variance = xs.length < 2 ? 0 : xs.reduce((sum, x) => sum + (x - m) ** 2, 0) / (xs.length - 1);
  const scale = 1 / Math.sqrt(variance + 1e-8);
  return xs.map((x) => (x - m) * scale + (o.shiftMean ? 0 : m));
}
