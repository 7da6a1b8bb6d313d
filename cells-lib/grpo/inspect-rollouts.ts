/** `inspectRollouts(trainer)`: one RL step's groups, each completion with every reward function's
 * score, its advantage, and its tokens shaded by log-prob, entropy or advantage. The values are
 * those the step kept (the worker's log-probs, the trainer's advantages), never recomputed. */
import { z } from "zod";
import { currentRenderer } from "../display/renderer.ts";
import type { MimeBundle } from "../display/types.ts";
import { tokenPieces } from "../tokenizer/token-pieces.ts";
import { Tokenizer } from "../tokenizer/tokenizer.ts";
import { OptionsError, parseOptions } from "../util/options.ts";
import type { RolloutGroup, RolloutStep } from "./rollouts.ts";
import { rolloutsHtml } from "./rollouts-html.ts";
import { rolloutsText } from "./rollouts-text.ts";

export const SHADES = ["logprob", "entropy", "advantage"] as const;
export type Shade = (typeof SHADES)[number];

const InspectOptions = z
  .object({
    /** What colours the tokens: log p (red: surprising), entropy (red: unsure), advantage
     * (green: pushed up, red: pushed down). */
    shade: z.enum(SHADES).default("logprob"),
    /** Which kept step (the trainer keeps the last `keepRollouts`); default: the latest. */
    step: z.number().int().min(1).optional(),
    /** Groups shown, from the first. */
    maxGroups: z.number().int().min(1).default(16),
    /** Decodes the tokens; taken from the trainer when one is given. */
    tokenizer: z.instanceof(Tokenizer, { error: "must be a Tokenizer (loadTokenizer, llama2cTokenizer)" }).optional(),
    /** false: only return the inspection. */
    display: z.boolean().default(true),
  })
  .strict();
export type InspectRolloutsOptions = z.input<typeof InspectOptions>;

export interface InspectedToken {
  id: number;
  /** The text the token adds in context ("" until a multi-byte character is complete). */
  text: string;
  logprob: number;
  entropy: number | null;
  /** This token's advantage: the sequence's, or its own (PPO); null when not trained on. */
  advantage: number | null;
}

export interface InspectedCompletion {
  text: string;
  rewards: Record<string, number | null>;
  total: number | null;
  reward: number | null;
  advantage: number | number[] | null;
  kept: boolean;
  tokens: InspectedToken[];
}

export interface InspectedGroup {
  prompt: string;
  reference?: string;
  trained: boolean;
  completions: InspectedCompletion[];
}

export interface RolloutInspection {
  step: number;
  algo: string;
  shade: Shade;
  /** The reward functions' names, in order. */
  rewardNames: string[];
  groups: InspectedGroup[];
  /** Groups the step had beyond maxGroups. */
  omittedGroups: number;
  bundle: MimeBundle;
}

/** What a trainer offers the inspector (GrpoTrainer has both). */
export interface RolloutSource {
  readonly rollouts: readonly RolloutStep[];
  readonly tokenizer: Tokenizer;
}

export function inspectRollouts(
  source: RolloutSource | RolloutStep,
  options: InspectRolloutsOptions = {},
): RolloutInspection {
  const o = parseOptions(InspectOptions, options, "inspectRollouts");
  const fromTrainer = "rollouts" in source;
  const tokenizer = o.tokenizer ?? (fromTrainer ? source.tokenizer : undefined);
  if (!tokenizer)
    throw new OptionsError('inspectRollouts: option "tokenizer" is needed to show a step record\'s tokens');
  const step = fromTrainer ? pickStep(source.rollouts, o.step) : source;
  if (!fromTrainer && o.step !== undefined && o.step !== step.step) {
    throw new OptionsError(`inspectRollouts: option "step" is ${o.step}, but the record given is step ${step.step}`);
  }
  if (o.shade === "entropy" && step.groups.some((g) => g.completions.some((c) => c.entropies === null))) {
    throw new OptionsError(
      `inspectRollouts: option "shade" is "entropy", but step ${step.step}'s completions carry no per-token entropy ` +
        '(train with grpoTrainer option recordEntropy: true); shade by "logprob" or "advantage"',
    );
  }
  const groups = step.groups.slice(0, o.maxGroups).map((g) => inspectGroup(g, tokenizer));
  const rewardNames = [...new Set(step.groups.flatMap((g) => g.completions.flatMap((c) => Object.keys(c.rewards))))];
  const view = {
    step: step.step,
    algo: step.algo,
    shade: o.shade,
    rewardNames,
    groups,
    omittedGroups: step.groups.length - groups.length,
  };
  const bundle: MimeBundle = { "text/html": rolloutsHtml(view), "text/plain": rolloutsText(view) };
  if (o.display) currentRenderer().display(bundle);
  return { ...view, bundle };
}

function pickStep(kept: readonly RolloutStep[], step: number | undefined): RolloutStep {
  if (kept.length === 0) {
    throw new OptionsError(
      "inspectRollouts: the trainer has kept no rollouts yet: run a step first (and keep option keepRollouts above 0)",
    );
  }
  if (step === undefined) return kept.at(-1)!;
  const found = kept.find((s) => s.step === step);
  if (!found) {
    throw new OptionsError(
      `inspectRollouts: option "step" is ${step}, but the trainer kept steps ${kept.map((s) => s.step).join(", ")} ` +
        "(raise keepRollouts to keep more)",
    );
  }
  return found;
}

function inspectGroup(g: RolloutGroup, tokenizer: Tokenizer): InspectedGroup {
  const group: InspectedGroup = {
    prompt: g.prompt,
    trained: g.trained,
    completions: g.completions.map((c) => {
      const pieces = tokenPieces(tokenizer, c.tokenIds, g.promptIds);
      return {
        text: c.text,
        rewards: c.rewards,
        total: c.total,
        reward: c.reward,
        advantage: c.advantage,
        kept: c.kept,
        tokens: c.tokenIds.map((id, t) => ({
          id,
          text: pieces[t]!,
          logprob: c.logprobs[t]!,
          entropy: c.entropies?.[t] ?? null,
          advantage:
            c.advantage === null ? null : typeof c.advantage === "number" ? c.advantage : (c.advantage[t] ?? null),
        })),
      };
    }),
  };
  if (g.reference !== undefined) group.reference = g.reference;
  return group;
}
