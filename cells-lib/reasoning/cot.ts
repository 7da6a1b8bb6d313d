/** The chain-of-thought dataset cell: rows with reasoning become chat examples whose assistant
 * turn is the reasoning and answer in one reasoning format, labelled with a reasoning type. */
import { z } from "zod";
import type { ChatMessage } from "../tokenizer/tokenizer.ts";
import { formatIssues, issuesFrom, parseOptions } from "../util/options.ts";
import { classifyReasoningType, REASONING_TYPES, type ReasoningType } from "./classify.ts";
import { gsm8kToCot } from "./gsm8k.ts";
import { formatReasoning, REASONING_STYLES } from "./markers.ts";

export interface CotRow {
  prompt: string;
  reasoning: string;
  answer: string | number;
  reasoning_type?: ReasoningType;
}

export interface CotExample {
  messages: ChatMessage[];
  reasoning_type: ReasoningType;
  /** Kept beside the messages so the same examples can score a model's answers. */
  answer: string;
}

const CotOptions = z
  .object({
    style: z.enum(REASONING_STYLES).default("think"),
    /** For rows without their own reasoning_type; otherwise `classifyReasoningType(prompt)`. */
    reasoningType: z.enum(REASONING_TYPES).optional(),
    /** Whitespace inside tags and between blocks (see formatReasoning). */
    pad: z.string().regex(/^\s*$/, "must be whitespace").default("\n"),
  })
  .strict();
export type CotOptions = z.input<typeof CotOptions>;

const Row = z.object({
  prompt: z.string({ error: "must be a string" }).trim().min(1, "must not be empty"),
  reasoning: z
    .string({ error: "is required (a chain-of-thought row needs its reasoning)" })
    .trim()
    .min(1, "must not be empty"),
  answer: z.union([z.string().trim().min(1, "must not be empty"), z.number()], {
    error: "must be a string or a number",
  }),
  reasoning_type: z.enum(REASONING_TYPES).optional(),
});

/** Rows may carry other fields; they are ignored. A row without reasoning is an error naming
 * the row, not a stub: made-up reasoning would teach the format without the thinking. */
export function toCotDataset(rows: readonly CotRow[], options?: CotOptions): CotExample[] {
  const o = parseOptions(CotOptions, options, "toCotDataset");
  return rows.map((raw, index) => {
    const row = parseRow(raw, index);
    const answer = String(row.answer);
    return {
      messages: [
        { role: "user", content: row.prompt },
        { role: "assistant", content: formatReasoning({ reasoning: row.reasoning, answer }, o.style, { pad: o.pad }) },
      ],
      reasoning_type: row.reasoning_type ?? o.reasoningType ?? classifyReasoningType(row.prompt),
      answer,
    };
  });
}

/** GSM8K rows ({question, answer}) with their calculator notes removed, labelled MATH. */
export function gsm8kCotDataset(
  rows: readonly { question: string; answer: string }[],
  options?: CotOptions,
): CotExample[] {
  return toCotDataset(
    rows.map((row) => ({ prompt: row.question, ...gsm8kToCot(row.answer), reasoning_type: "MATH" })),
    options,
  );
}

function parseRow(row: unknown, index: number): z.output<typeof Row> {
  const result = Row.safeParse(row);
  if (result.success) return result.data;
  throw new Error(`toCotDataset: row ${index}: ${formatIssues(issuesFrom(result.error, row), "field")}`);
}
