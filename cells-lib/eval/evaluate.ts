/** `evaluate`: generate for held-out prompts and score the answers — accuracy (exact numeric
 * match of the final answer), format accuracy, partial accuracy and pass@k. */
import { z } from "zod";
import { interruptible } from "../cells/interrupt.ts";
import type { Model } from "../cells/model.ts";
import { sample } from "../cells/sample.ts";
import { type ChatTemplate, ChatTemplateSchema, type TemplateName } from "../chat/templates.ts";
import { type PromptRow, promptTokens } from "../chat/tokenize.ts";
import { table } from "../display/table.ts";
import { REASONING_STYLES } from "../reasoning/index.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { AbortSignalOption, parseOptions } from "../util/options.ts";
import { passAtK } from "./pass-at-k.ts";
import { type CompletionScore, scoreCompletion } from "./score.ts";

/** A prompt (or conversation) and its reference answer. */
export type EvalRow = PromptRow & { reference: string };

const EvaluateOptions = z
  .object({
    /** How prompts are rendered: the template the model was trained with. */
    template: z.union([z.string(), ChatTemplateSchema]).default("plain"),
    /** Completions per prompt; pass@k is reported for k = 1 and k = samples. */
    samples: z.number().int().min(1).default(1),
    /** Default: 0 (greedy) for one sample, 1 for several. */
    temperature: z.number().min(0).optional(),
    maxNewTokens: z.number().int().min(1).default(256),
    /** The reasoning format the completions should follow. */
    style: z.enum(REASONING_STYLES).default("think"),
    /** Prompts per sampling call. */
    batchSize: z.number().int().min(1).default(64),
    seed: z.number().int().nonnegative().default(0),
    stopStrings: z.array(z.string().min(1)).default([]),
    /** Stops the evaluation before its next sampling call (so does the kernel's interrupt). */
    signal: AbortSignalOption.optional(),
  })
  .strict();
export type EvaluateOptions = Omit<z.input<typeof EvaluateOptions>, "template"> & {
  template?: TemplateName | ChatTemplate;
};

export interface EvaluatedCompletion extends CompletionScore {
  text: string;
  tokens: number;
}

export interface EvalResult {
  rows: number;
  samples: number;
  /** Fractions 0–1 over all completions. */
  accuracy: number;
  formatAccuracy: number;
  partialAccuracy: number;
  /** "pass@1", "pass@k": the unbiased estimator, averaged over prompts. */
  passAtK: Record<string, number>;
  meanCompletionTokens: number;
  /** Completions that hit maxNewTokens. */
  truncatedFraction: number;
  wallS: number;
  details: { reference: string; completions: EvaluatedCompletion[] }[];
}

export async function evaluate(
  model: Model,
  tokenizer: Tokenizer,
  rows: readonly EvalRow[],
  options: EvaluateOptions = {},
): Promise<EvalResult> {
  const o = parseOptions(EvaluateOptions, options, "evaluate");
  if (rows.length === 0) throw new Error("evaluate: no rows to evaluate");
  const started = Date.now();
  const template = o.template as TemplateName | ChatTemplate;
  const prompts = rows.map((row, i) => {
    if (typeof row.reference !== "string") throw new Error(`evaluate: row ${i} has no reference answer (a string)`);
    return promptTokens(row, { tokenizer, template });
  });
  const temperature = o.temperature ?? (o.samples === 1 ? 0 : 1);
  const details: EvalResult["details"] = [];
  let truncated = 0;
  const interrupted = () =>
    `after ${details.length} of ${rows.length} prompts; it returns nothing: run it again to evaluate (its seeds give the same completions)`;
  await interruptible({ cell: "evaluate", signal: o.signal, detail: interrupted }, async (signal) => {
    for (let start = 0; start < rows.length; start += o.batchSize) {
      signal.throwIfAborted();
      const batch = prompts.slice(start, start + o.batchSize);
      const completions = await sample(model, tokenizer, batch, {
        n: o.samples,
        temperature,
        maxNewTokens: o.maxNewTokens,
        stopStrings: o.stopStrings,
        seed: o.seed + start,
        signal, // cancels the chunk in flight too
      });
      batch.forEach((_, i) => {
        const reference = rows[start + i]!.reference;
        const mine = completions.filter((c) => c.promptIndex === i);
        truncated += mine.filter((c) => c.stopReason === "length").length;
        details.push({
          reference,
          completions: mine.map((c) => ({
            text: c.text,
            tokens: c.tokenIds.length,
            ...scoreCompletion(c.text, reference, o.style),
          })),
        });
      });
    }
  });
  const all = details.flatMap((d) => d.completions);
  const mean = (pick: (c: EvaluatedCompletion) => number) => all.reduce((s, c) => s + pick(c), 0) / all.length;
  const ks = [...new Set([1, o.samples])];
  const passAtKs = Object.fromEntries(
    ks.map((k) => [
      `pass@${k}`,
      details.reduce((s, d) => s + passAtK(o.samples, d.completions.filter((c) => c.correct).length, k), 0) /
        details.length,
    ]),
  );
  return {
    rows: rows.length,
    samples: o.samples,
    accuracy: mean((c) => Number(c.correct)),
    formatAccuracy: mean((c) => Number(c.formatOk)),
    partialAccuracy: mean((c) => Number(c.partial)),
    passAtK: passAtKs,
    meanCompletionTokens: mean((c) => c.tokens),
    truncatedFraction: truncated / all.length,
    wallS: (Date.now() - started) / 1000,
    details,
  };
}

/** The comparison rows for evaluations of several models on the same prompts, in order
 * (e.g. { base, sft, grpo }), with each accuracy's change from the first. */
export function comparisonRows(results: Readonly<Record<string, EvalResult>>): Record<string, string | number>[] {
  const entries = Object.entries(results);
  const first = entries[0]?.[1];
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const delta = (x: number, base: number | undefined) =>
    base === undefined ? "" : `${x >= base ? "+" : ""}${(100 * (x - base)).toFixed(1)}`;
  return entries.map(([model, r]) => ({
    model,
    accuracy: pct(r.accuracy),
    "Δ accuracy": entries[0]![0] === model ? "" : delta(r.accuracy, first?.accuracy),
    format: pct(r.formatAccuracy),
    partial: pct(r.partialAccuracy),
    ...Object.fromEntries(Object.entries(r.passAtK).map(([k, v]) => [k, pct(v)])),
    "mean tokens": Number(r.meanCompletionTokens.toFixed(1)),
  }));
}

/** Shows the before/after table of `comparisonRows`. */
export function compareEvaluations(results: Readonly<Record<string, EvalResult>>, title = "Evaluation"): void {
  table(comparisonRows(results), { title });
}
