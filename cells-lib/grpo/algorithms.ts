/** What each RL algorithm changes, as data: the advantage's scale, the loss's aggregation and
 * clip range, sequence-level ratios, dynamic sampling, overlong handling, GRPO-LEAD's rewards,
 * PPO's critic. Formulas: docs/algorithms.md. Every field can be overridden. */
import { z } from "zod";
import { AGGREGATIONS } from "../bridge/protocol.ts";

export const ALGORITHMS = ["grpo", "dr_grpo", "dapo", "gspo", "grpo_lead", "ppo"] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

export const AlgorithmSettings = z
  .object({
    /** Group normalization of rewards into advantages (not used by PPO, which uses GAE). */
    scale: z.enum(["group", "batch", "none"]),
    aggregation: z.enum(AGGREGATIONS),
    epsLow: z.number().min(0),
    epsHigh: z.number().min(0),
    ratioLevel: z.enum(["token", "sequence"]),
    /** DAPO: draw more prompts until the batch holds only groups whose rewards differ. */
    dynamicSampling: z.boolean(),
    /** DAPO: a soft length penalty added to the reward, or truncated completions masked out. */
    overlong: z.enum(["none", "penalty", "mask"]),
    /** GRPO-LEAD: length-dependent correctness reward and difficulty-weighted advantages. */
    lead: z.boolean(),
    /** PPO: value head, GAE over completion tokens, clipped value loss. */
    ppo: z.boolean(),
  })
  .strict();
export type AlgorithmSettings = z.infer<typeof AlgorithmSettings>;

const GRPO: AlgorithmSettings = {
  scale: "group",
  aggregation: "seq_mean_token_mean",
  epsLow: 0.2,
  epsHigh: 0.2,
  ratioLevel: "token",
  dynamicSampling: false,
  overlong: "none",
  lead: false,
  ppo: false,
};

export const ALGORITHM_SETTINGS: Readonly<Record<Algorithm, AlgorithmSettings>> = {
  grpo: GRPO,
  // No std division; token sums divided by a constant (batch × max completion length).
  dr_grpo: { ...GRPO, scale: "none", aggregation: "seq_mean_token_sum_norm" },
  // Clip-higher, token-level loss, dynamic sampling, soft overlong punishment, no KL.
  dapo: { ...GRPO, epsHigh: 0.28, aggregation: "token_mean", dynamicSampling: true, overlong: "penalty" },
  // Sequence-level importance ratio with the paper's tiny clip range.
  gspo: { ...GRPO, ratioLevel: "sequence", epsLow: 3e-4, epsHigh: 4e-4 },
  grpo_lead: { ...GRPO, lead: true },
  ppo: { ...GRPO, aggregation: "token_mean", ppo: true },
};
