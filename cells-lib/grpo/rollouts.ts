/** What one RL step sampled and how it was scored, kept by the trainer for `inspectRollouts`:
 * per group the prompt and its completions, and per completion the worker's per-token log-probs,
 * every reward function's value and the advantage the loss was given. Values are copied from
 * the step as it ran, not recomputed. */
import type { StopReason } from "../cells/sample.ts";
import type { TrainingExample } from "../cells/train.ts";
import type { RewardScores } from "../rl/rewards.ts";
import type { Algorithm } from "./algorithms.ts";

export interface RolloutCompletion {
  text: string;
  tokenIds: number[];
  /** log p(token) as the worker returned it when sampling (at the run's temperature). */
  logprobs: number[];
  /** Per-token entropy of the distribution each token was drawn from; null unless the trainer
   * had option recordEntropy. */
  entropies: number[] | null;
  stopReason: StopReason;
  /** Each reward function's unweighted value (null: no value, or it failed and was skipped). */
  rewards: Record<string, number | null>;
  /** The weighted sum of the rewards. */
  total: number | null;
  /** The reward the advantage came from (after the overlong penalty or GRPO-LEAD's change). */
  reward: number | null;
  /** The advantage the loss used: one for the sequence, or one per token (PPO); null when the
   * group was drawn but not trained on (DAPO's dynamic sampling left it out). */
  advantage: number | number[] | null;
  /** false: masked out of the loss (DAPO's overlong filtering). */
  kept: boolean;
}

export interface RolloutGroup {
  prompt: string;
  reference?: string;
  promptIds: number[];
  /** Trained on this step (false: drawn, then left out by dynamic sampling). */
  trained: boolean;
  completions: RolloutCompletion[];
}

export interface RolloutStep {
  step: number;
  algo: Algorithm;
  temperature: number;
  groups: RolloutGroup[];
}

/** A group as the trainer holds it. */
export interface SampledGroup {
  row: { reference?: string } & ({ prompt: string } | { messages: readonly { content: string }[] });
  promptIds: number[];
  completions: readonly {
    text: string;
    tokenIds: number[];
    logprobs: number[];
    stopReason: StopReason;
    entropies?: number[];
  }[];
  scores: RewardScores;
}

export interface StepRollouts {
  step: number;
  algo: Algorithm;
  temperature: number;
  /** Every group sampled this step. */
  drawn: readonly SampledGroup[];
  /** The groups trained on, in the order of `examples`. */
  trained: readonly SampledGroup[];
  /** The rewards the advantages came from, per trained group. */
  rewards: readonly (readonly (number | null)[])[];
  keep: readonly (readonly boolean[])[];
  /** The examples sent to the worker, one per completion of the trained groups, in order. */
  examples: readonly TrainingExample[];
}

export function rolloutStep(s: StepRollouts): RolloutStep {
  // Where each trained group's completions start among the examples.
  const trainedAt = new Map<SampledGroup, { group: number; example: number }>();
  let offset = 0;
  s.trained.forEach((g, group) => {
    trainedAt.set(g, { group, example: offset });
    offset += g.completions.length;
  });
  return {
    step: s.step,
    algo: s.algo,
    temperature: s.temperature,
    groups: s.drawn.map((g) => {
      const at = trainedAt.get(g);
      const group: RolloutGroup = {
        prompt: "prompt" in g.row ? g.row.prompt : g.row.messages.map((m) => m.content).join("\n"),
        promptIds: [...g.promptIds],
        trained: at !== undefined,
        completions: g.completions.map((c, j) => ({
          text: c.text,
          tokenIds: [...c.tokenIds],
          logprobs: [...c.logprobs],
          entropies: c.entropies ? [...c.entropies] : null,
          stopReason: c.stopReason,
          rewards: Object.fromEntries(Object.entries(g.scores.values).map(([name, vs]) => [name, vs[j] ?? null])),
          total: g.scores.totals[j] ?? null,
          reward: at === undefined ? null : (s.rewards[at.group]?.[j] ?? null),
          advantage: at === undefined ? null : completionAdvantage(s.examples[at.example + j], g.promptIds.length),
          kept: at === undefined ? false : (s.keep[at.group]?.[j] ?? true),
        })),
      };
      if (g.row.reference !== undefined) group.reference = g.row.reference;
      return group;
    }),
  };
}

/** The example's advantage without its prompt positions (per-token advantages are padded there). */
function completionAdvantage(example: TrainingExample | undefined, promptLength: number): number | number[] | null {
  const a = example?.advantage;
  if (a === undefined) return null;
  return typeof a === "number" ? a : a.slice(promptLength);
}
