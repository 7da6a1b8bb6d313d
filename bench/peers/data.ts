/** The data both sides train on, built once by thinkcells: the demo's arithmetic (notebooks/03), notebook
 * 05's preference pairs, and the same rows as thinkcells tokenizes them, so TRL trains on the same tokens. */
import {
  arithmeticPreferences,
  formatExample,
  generateArithmetic,
  promptTokens,
  splitDataset,
  type Tokenizer,
  tokenizeDataset,
} from "../../cells-lib/index.ts";
import { dataOrder } from "../../cells-lib/training/data-order.ts";
import type { PromptRow, TokenizedExample } from "./jobs.ts";
import type { Settings } from "./settings.ts";

/** trainSft's and trainDpo's default cutoff for stories260K (its 512 positions). */
const CUTOFF = 512;

export interface ArithmeticRow {
  prompt: string;
  completion: string;
  reference: string;
}

/** The demo's split: training rows, and the held-out problems every stage is scored on. */
export function arithmeticData(s: Settings["data"]): { train: ArithmeticRow[]; heldOut: ArithmeticRow[] } {
  const rows = generateArithmetic({ count: s.rows, seed: s.seed }).map((r) => ({
    ...formatExample(r),
    reference: r.answer,
  }));
  const { train, validation, test } = splitDataset(rows, { seed: 0 });
  return { train, heldOut: [...test, ...validation].slice(0, s.heldOut) };
}

/** The prompts GRPO draws in `count` draws with `seed`: thinkcells' data order, which TRL then takes as it is. */
export function drawnPrompts(rows: readonly PromptRow[], seed: number, count: number): PromptRow[] {
  return dataOrder(rows.length, seed)
    .take(0, count)
    .map((i) => rows[i]!);
}

export function promptIds(rows: readonly PromptRow[], tokenizer: Tokenizer): number[][] {
  return rows.map((r) => promptTokens({ prompt: r.prompt }, { tokenizer, template: "plain" }));
}

/** SFT rows as trainSft tokenizes them (rows it drops are left out). */
export function sftExamples(
  rows: readonly { prompt: string; completion: string }[],
  tokenizer: Tokenizer,
): TokenizedExample[] {
  return tokenizeDataset(rows, { tokenizer, template: "plain", cutoffLength: CUTOFF }).examples.map((e) => ({
    tokens: e.tokens,
    weights: e.weights,
  }));
}

export interface PreferenceRow {
  prompt: string;
  chosen: string;
  rejected: string;
}

/** notebooks/05's preference pairs: training rows and held-out rows. */
export function preferenceData(s: Settings["dpo"]): { train: PreferenceRow[]; heldOut: PreferenceRow[] } {
  const rows = arithmeticPreferences({ count: s.pairs, seed: s.seed }).map(({ prompt, chosen, rejected }) => ({
    prompt,
    chosen,
    rejected,
  }));
  const { train, validation, test } = splitDataset(rows, { seed: 0 });
  return { train, heldOut: [...validation, ...test] };
}

/** A pair as trainDpo tokenizes it: each sequence with 1 on the completion tokens its log-prob sums. */
export interface TokenizedPair {
  chosen: { tokens: number[]; mask: number[] };
  rejected: { tokens: number[]; mask: number[] };
}

/** Pairs as trainDpo tokenizes them, leaving out the ones it drops (no completion token left, or identical). */
export function tokenizePairs(rows: readonly PreferenceRow[], tokenizer: Tokenizer): TokenizedPair[] {
  const side = (pick: (r: PreferenceRow) => string) =>
    new Map(
      tokenizeDataset(
        rows.map((r) => ({ prompt: r.prompt, completion: pick(r) })),
        { tokenizer, template: "plain", cutoffLength: CUTOFF },
      ).examples.map((e) => [e.row, { tokens: e.tokens, mask: e.weights }]),
    );
  const chosen = side((r) => r.chosen);
  const rejected = side((r) => r.rejected);
  return rows.flatMap((_, row) => {
    const c = chosen.get(row);
    const r = rejected.get(row);
    if (!c || !r || (c.tokens.length === r.tokens.length && c.tokens.every((t, i) => t === r.tokens[i]))) return [];
    return [{ chosen: c, rejected: r }];
  });
}

/** A pair as TRL's DPO collator takes it: the prompt's ids, then each completion's. */
export function trlPair(pair: TokenizedPair): { prompt_ids: number[]; chosen_ids: number[]; rejected_ids: number[] } {
  const split = (s: { tokens: number[]; mask: number[] }) => {
    const start = s.mask.indexOf(1);
    if (start < 0 || s.mask.slice(start).some((m) => m !== 1))
      throw new Error("tokenizePairs: expected one run of completion tokens at the end of each sequence");
    return { prompt: s.tokens.slice(0, start), completion: s.tokens.slice(start) };
  };
  const c = split(pair.chosen);
  const r = split(pair.rejected);
  if (c.prompt.join() !== r.prompt.join()) throw new Error("tokenizePairs: chosen and rejected prompts tokenize apart");
  return { prompt_ids: c.prompt, chosen_ids: c.completion, rejected_ids: r.completion };
}
