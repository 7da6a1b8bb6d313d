/** `playground(base, trained, tokenizer, prompts, { reward | judge })`: both models' completions
 * for the same prompts side by side, and the trained model's win rate over the base under a
 * reward function (the same RewardFn GRPO trains with) or a judge. */
import { z } from "zod";
import type { Model } from "../cells/model.ts";
import { sample } from "../cells/sample.ts";
import { type ChatTemplate, ChatTemplateSchema, type TemplateName } from "../chat/templates.ts";
import { type PromptRow, promptTokens } from "../chat/tokenize.ts";
import { table } from "../display/table.ts";
import type { RewardFn } from "../rl/rewards.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { AbortSignalOption, parseOptions } from "../util/options.ts";
import {
  countWins,
  type JudgeFn,
  type Pair,
  type PairResult,
  scorePair,
  type WinCounts,
  type Winner,
  winRate,
} from "./win-rate.ts";

/** A prompt (or conversation); `reference` is what a correctness reward checks. */
export type PlaygroundRow = PromptRow & { reference?: string };

/** judge(prompt, a, b, row): "a" when the base model's completion is better, "b" when the
 * trained model's is, "tie" otherwise. */
export type Judge = JudgeFn<PlaygroundRow>;

const fn = <F>(what: string) => z.custom<F>((v) => typeof v === "function", `${what} must be a function`);

const PlaygroundOptions = z
  .object({
    /** How prompts are rendered: the template the models were trained with. */
    template: z.union([z.string(), ChatTemplateSchema]).default("plain"),
    maxNewTokens: z.number().int().min(1).default(128),
    /** 0 (the default) is greedy: the comparison repeats exactly. */
    temperature: z.number().min(0).default(0),
    topP: z.number().gt(0).max(1).default(1),
    /** Both models sample with this seed. */
    seed: z.number().int().nonnegative().default(0),
    stopStrings: z.array(z.string().min(1)).default([]),
    /** Scores each completion; the higher one wins, equal ones tie, and a pair where it gives
     * null for either completion is left out of the win rate. */
    reward: fn<RewardFn<PlaygroundRow>>("reward").optional(),
    /** judge(prompt, a, b, row) → "a" (the base's completion is better), "b" (the trained one's)
     * or "tie". The base's completion is always "a": a judge with a position bias should be asked
     * both ways round inside the function. */
    judge: fn<Judge>("judge").optional(),
    /** Column names for the two models. */
    names: z
      .object({ base: z.string().min(1).default("base"), trained: z.string().min(1).default("trained") })
      .strict()
      .refine((n) => n.base !== n.trained, "the two names must differ")
      .default({ base: "base", trained: "trained" }),
    title: z.string().optional(),
    /** false: only return the comparison. */
    display: z.boolean().default(true),
    signal: AbortSignalOption.optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if ((o.reward === undefined) === (o.judge === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: [o.reward === undefined ? "reward" : "judge"],
        message: "give either a reward function (option reward) or a judge (option judge), not both",
      });
    }
  });

export type PlaygroundOptions = Omit<z.input<typeof PlaygroundOptions>, "template"> & {
  template?: TemplateName | ChatTemplate;
};

export interface PlaygroundComparison extends PairResult {
  prompt: string;
  reference?: string;
  base: string;
  trained: string;
}

export interface PlaygroundResult extends WinCounts {
  rows: PlaygroundComparison[];
  /** (wins + ties / 2) / decided pairs; null when no pair was decided. */
  winRate: number | null;
  scorer: "reward" | "judge";
  names: { base: string; trained: string };
}

export async function playground(
  base: Model,
  trained: Model,
  tokenizer: Tokenizer,
  prompts: readonly (string | PlaygroundRow)[],
  options: PlaygroundOptions,
): Promise<PlaygroundResult> {
  const o = parseOptions(PlaygroundOptions, options, "playground");
  if (prompts.length === 0) throw new Error("playground: no prompts");
  const rows: PlaygroundRow[] = prompts.map((p) => (typeof p === "string" ? { prompt: p } : p));
  const template = o.template as TemplateName | ChatTemplate;
  const encoded = rows.map((row) => promptTokens(row, { tokenizer, template }));
  const sampling = {
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topP: o.topP,
    seed: o.seed,
    stopStrings: o.stopStrings,
    ...(o.signal && { signal: o.signal }),
  };
  const fromBase = await sample(base, tokenizer, encoded, sampling);
  const fromTrained = await sample(trained, tokenizer, encoded, sampling);
  const scorer = o.reward ? { reward: o.reward } : { judge: o.judge! };

  const compared: PlaygroundComparison[] = [];
  for (const [i, row] of rows.entries()) {
    const pair: Pair<PlaygroundRow> = {
      row,
      prompt: "prompt" in row ? row.prompt : row.messages.map((m) => m.content).join("\n"),
      base: fromBase[i]!,
      trained: fromTrained[i]!,
    };
    if (row.reference !== undefined) pair.reference = row.reference;
    const result = await scorePair(pair, scorer);
    compared.push({
      prompt: pair.prompt,
      ...(pair.reference !== undefined && { reference: pair.reference }),
      base: pair.base.text,
      trained: pair.trained.text,
      ...result,
    });
  }
  const counts = countWins(compared);
  const result: PlaygroundResult = {
    rows: compared,
    ...counts,
    winRate: winRate(counts),
    scorer: o.reward ? "reward" : "judge",
    names: o.names,
  };
  if (o.display) table(displayRows(result), { title: o.title ?? summaryLine(result) });
  return result;
}

/** "trained vs base: win rate 62.5% over 8 prompts (5 wins, 2 losses, 1 tie; a tie counts half)". */
export function summaryLine(r: PlaygroundResult): string {
  const { base, trained } = r.names;
  const decided = r.wins + r.losses + r.ties;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : word.endsWith("s") ? "es" : "s"}`;
  const rate = r.winRate === null ? "no win rate" : `win rate ${(100 * r.winRate).toFixed(1)}%`;
  const counts = `${plural(r.wins, "win")}, ${plural(r.losses, "loss")}, ${plural(r.ties, "tie")}; a tie counts half`;
  const undecided = r.undecided > 0 ? `; ${r.undecided} undecided (the reward gave no value)` : "";
  return `${trained} vs ${base} (${r.scorer}): ${rate} over ${plural(decided, "prompt")} (${counts})${undecided}`;
}

function displayRows(r: PlaygroundResult): Record<string, string | number>[] {
  const { base, trained } = r.names;
  const label: Record<Winner, string> = { base, trained, tie: "tie" };
  return r.rows.map((row) => ({
    prompt: row.prompt,
    ...(row.reference !== undefined && { reference: row.reference }),
    [base]: row.base,
    [trained]: row.trained,
    ...(r.scorer === "reward" && {
      [`${base} reward`]: row.baseReward ?? "—",
      [`${trained} reward`]: row.trainedReward ?? "—",
    }),
    winner: row.winner === null ? "—" : label[row.winner],
  }));
}
