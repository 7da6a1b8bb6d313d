/** SFT rows to training examples with the loss on assistant tokens only: prompts, system, user
 * and tool turns get weight 0; assistant turns and the marker that ends them get weight 1, so
 * the model learns to stop. Rows longer than the cutoff keep their start. */
import { z } from "zod";
import { errorMessage } from "../tokenizer/error-message.ts";
import { type ChatMessage, Tokenizer } from "../tokenizer/tokenizer.ts";
import { formatIssues, issuesFrom, OptionsError, parseOptions } from "../util/options.ts";
import { type EncodedSegments, encodeSegments } from "./template-encoding.ts";
import { conversationSegments } from "./template-segments.ts";
import { type ChatTemplate, ChatTemplateSchema, resolveTemplate, type TemplateName } from "./templates.ts";

/** A prompt/completion pair (the user turn and the assistant turn), or a conversation in
 * which every assistant turn is trained. Other fields are ignored. */
export type SftRow = { prompt: string; completion: string } | { messages: readonly ChatMessage[] };
/** What generation starts from: a prompt, or a conversation (a final assistant turn is left out). */
export type PromptRow = { prompt: string } | { messages: readonly ChatMessage[] };

const PromptOptions = z
  .object({
    tokenizer: z.instanceof(Tokenizer, { error: "must be a Tokenizer (loadTokenizer, llama2cTokenizer)" }),
    /** A built-in name, "tokenizer" for the tokenizer's own chat template, or a custom template. */
    template: z.union([z.string(), ChatTemplateSchema]),
    /** Start with the tokenizer's BOS (if it has one and the template did not write it), as
     * `sample()` does with `addSpecialTokens`. */
    addBos: z.boolean().default(true),
    /** End each assistant turn with the tokenizer's EOS, trained. Default: for templates
     * without an end-of-turn marker of their own (plain, thinking). */
    addEos: z.boolean().optional(),
  })
  .strict();
export type PromptOptions = Omit<z.input<typeof PromptOptions>, "template"> & { template: TemplateName | ChatTemplate };

const TokenizeOptions = PromptOptions.extend({
  /** Longest example in tokens; longer rows keep their first cutoffLength tokens. */
  cutoffLength: z.number().int().min(2),
}).strict();
export type TokenizeOptions = PromptOptions & { cutoffLength: number };

export interface TokenizedExample {
  tokens: number[];
  /** Per token: 1 where the loss is taken (predicting an assistant token), 0 elsewhere. */
  weights: number[];
  /** Tokens before the cutoff. */
  fullLength: number;
}

/** A training example and the index of the row it came from. */
export interface SftExample {
  tokens: number[];
  weights: number[];
  row: number;
}

export interface TruncationReport {
  rows: number;
  cutoffLength: number;
  /** Rows longer than the cutoff: their length and the tokens kept. */
  truncated: { row: number; tokens: number; kept: number }[];
  /** Rows with no assistant token left (cut off, or none to begin with); not in `examples`. */
  dropped: { row: number; tokens: number }[];
  /** Row lengths in tokens before the cutoff. */
  maxLength: number;
  meanLength: number;
}

interface Context {
  tokenizer: Tokenizer;
  template: ChatTemplate;
  bos: number | undefined;
  eos: number | undefined;
}

/** One row to tokens and weights. With the cutoff, a long row's weights can all be 0 (its
 * assistant turn cut off); `tokenizeDataset` drops such rows. */
export function tokenizeExample(example: SftRow, options: TokenizeOptions): TokenizedExample {
  const o = parseOptions(TokenizeOptions, options, "tokenizeExample");
  return tokenizeWith(context(o, "tokenizeExample"), example, o.cutoffLength);
}

/** Rows to training examples (in row order, dropped rows left out) and a report of what the
 * cutoff did. */
export function tokenizeDataset(
  rows: readonly SftRow[],
  options: TokenizeOptions,
): { examples: SftExample[]; report: TruncationReport } {
  const o = parseOptions(TokenizeOptions, options, "tokenizeDataset");
  const ctx = context(o, "tokenizeDataset");
  const examples: SftExample[] = [];
  const report: TruncationReport = {
    rows: rows.length,
    cutoffLength: o.cutoffLength,
    truncated: [],
    dropped: [],
    maxLength: 0,
    meanLength: 0,
  };
  let total = 0;
  rows.forEach((example, row) => {
    let t: TokenizedExample;
    try {
      t = tokenizeWith(ctx, example, o.cutoffLength);
    } catch (err) {
      throw new Error(`tokenizeDataset: row ${row}: ${errorMessage(err)}`, { cause: err });
    }
    total += t.fullLength;
    report.maxLength = Math.max(report.maxLength, t.fullLength);
    if (t.fullLength > t.tokens.length) report.truncated.push({ row, tokens: t.fullLength, kept: t.tokens.length });
    if (t.weights.some((w) => w > 0)) examples.push({ tokens: t.tokens, weights: t.weights, row });
    else report.dropped.push({ row, tokens: t.fullLength });
  });
  report.meanLength = rows.length === 0 ? 0 : total / rows.length;
  return { examples, report };
}

/** The ids generation starts from, exactly as training saw them before the (last) assistant
 * turn: pass them to `sample()` so evaluation prompts match training. */
export function promptTokens(example: PromptRow, options: PromptOptions): number[] {
  const o = parseOptions(PromptOptions, options, "promptTokens");
  const ctx = context(o, "promptTokens");
  const messages = rowMessages(example, false);
  const before = messages.at(-1)?.role === "assistant" ? messages.slice(0, -1) : messages;
  return encodeRow(ctx, before, true).tokens;
}

function context(o: z.output<typeof PromptOptions>, where: string): Context {
  const template = resolveTemplate(o.template as TemplateName | ChatTemplate, o.tokenizer, where);
  const addEos = o.addEos ?? template.eosEndsTurn;
  if (addEos && o.tokenizer.eosTokenId === undefined) {
    throw new OptionsError(
      `${where}: option "addEos": ${o.tokenizer.source} has no EOS token` +
        (o.addEos === undefined
          ? `; template "${template.name}" ends assistant turns with it (pass addEos: false to train without a stop token)`
          : ""),
    );
  }
  return {
    tokenizer: o.tokenizer,
    template,
    bos: o.addBos ? o.tokenizer.bosTokenId : undefined,
    eos: addEos ? o.tokenizer.eosTokenId : undefined,
  };
}

function tokenizeWith(ctx: Context, example: SftRow, cutoffLength: number): TokenizedExample {
  const { tokens, weights } = encodeRow(ctx, rowMessages(example, true), false);
  return { tokens: tokens.slice(0, cutoffLength), weights: weights.slice(0, cutoffLength), fullLength: tokens.length };
}

function encodeRow(ctx: Context, messages: ChatMessage[], addGenerationPrompt: boolean): EncodedSegments {
  const body = encodeSegments(
    ctx.tokenizer,
    conversationSegments(ctx.tokenizer, ctx.template, messages, addGenerationPrompt),
    ctx.eos,
  );
  const bos = ctx.bos !== undefined && body.tokens[0] !== ctx.bos ? [ctx.bos] : [];
  const tokens = [...bos, ...body.tokens];
  const weights = [...bos.map(() => 0), ...body.weights];
  // Token 0 is never predicted (there is nothing before it).
  if (weights.length > 0) weights[0] = 0;
  return { tokens, weights };
}

const Message = z.object({ role: z.string(), content: z.string() });
const MessagesRow = z.object({ messages: z.array(Message).min(1, "expected at least one message") });
const PromptRow = z.object({ prompt: z.string() });
const PromptCompletionRow = z.object({ prompt: z.string(), completion: z.string() });

/** A row's conversation: its messages, or its prompt as the user turn (and its completion as
 * the assistant turn). */
function rowMessages(row: unknown, withCompletion: boolean): ChatMessage[] {
  const keys = typeof row === "object" && row !== null ? row : {};
  if ("messages" in keys) return parseRow(MessagesRow, row).messages.map(({ role, content }) => ({ role, content }));
  if (!("prompt" in keys))
    throw new Error(`expected ${withCompletion ? "{prompt, completion}" : "{prompt}"} or {messages}`);
  if (!withCompletion) return [{ role: "user", content: parseRow(PromptRow, row).prompt }];
  const { prompt, completion } = parseRow(PromptCompletionRow, row);
  return [
    { role: "user", content: prompt },
    { role: "assistant", content: completion },
  ];
}

function parseRow<S extends z.ZodType>(schema: S, row: unknown): z.output<S> {
  const result = schema.safeParse(row);
  if (result.success) return result.data;
  throw new Error(formatIssues(issuesFrom(result.error, row), "field"));
}

/** One paragraph for the notebook: how many rows the cutoff cut, which, and which were dropped. */
export function formatTruncationReport(report: TruncationReport): string {
  const { rows, cutoffLength, truncated, dropped } = report;
  if (rows === 0) return "No rows.";
  const longest = `longest ${count(report.maxLength)} tokens`;
  const parts =
    truncated.length === 0
      ? [
          `All ${count(rows)} rows fit in cutoffLength ${cutoffLength} (mean ${report.meanLength.toFixed(1)} tokens, ${longest}).`,
        ]
      : [
          `${count(truncated.length)} of ${count(rows)} rows (${percent(truncated.length / rows)}) are longer than cutoffLength ` +
            `${cutoffLength} and were cut: ${rowList(truncated)} (${longest}).`,
        ];
  const cutAway = dropped.filter((d) => d.tokens > cutoffLength);
  const empty = dropped.filter((d) => d.tokens <= cutoffLength);
  if (cutAway.length > 0)
    parts.push(
      `${rowCount(cutAway)} no assistant token left and ${cutAway.length === 1 ? "was" : "were"} dropped: ${rowList(cutAway)}.`,
    );
  if (empty.length > 0)
    parts.push(
      `${rowCount(empty)} no assistant tokens at all and ${empty.length === 1 ? "was" : "were"} dropped: ${rowList(empty)}.`,
    );
  return parts.join(" ");
}

const count = (n: number): string => n.toLocaleString("en-US");
const percent = (fraction: number): string => (fraction < 0.001 ? "<0.1%" : `${(fraction * 100).toFixed(1)}%`);
const rowCount = (list: readonly unknown[]): string =>
  `${count(list.length)} ${list.length === 1 ? "row" : "rows"} had`;

const LISTED = 10;

function rowList(list: readonly { row: number }[]): string {
  const shown = list
    .slice(0, LISTED)
    .map((r) => r.row)
    .join(", ");
  const more = list.length > LISTED ? ` and ${count(list.length - LISTED)} more` : "";
  return `${list.length === 1 ? "row" : "rows"} ${shown}${more}`;
}
