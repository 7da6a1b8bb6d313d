/** `datasetStats(rows)`: sizes, length distributions per field, duplicates and a few examples. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { seededShuffle } from "../util/random.ts";
import { canonicalJson } from "./canonical-json.ts";
import { type Distribution, distribution } from "./distribution.ts";
import { textFields } from "./text-fields.ts";
import type { DatasetRow } from "./types.ts";

/** Anything that turns text into token ids, such as thinkcells' Tokenizer. */
export interface TokenEncoder {
  encode(text: string): number[];
}

export const DatasetStatsOptions = z
  .object({
    /** Lengths are in tokens with a tokenizer, in characters (code points) without. */
    tokenizer: z
      .custom<TokenEncoder>(
        (v) => typeof (v as TokenEncoder | null)?.encode === "function",
        "expected a tokenizer with encode(text) → number[]",
      )
      .optional(),
    bins: z.number().int().min(1).default(20),
    /** How many example rows to pick (at random, with `seed`). */
    examples: z.number().int().min(0).default(3),
    seed: z.number().int().default(0),
  })
  .strict();
export type DatasetStatsOptions = z.input<typeof DatasetStatsOptions>;

export interface FieldStats extends Distribution {
  /** A top-level key, or "messages.<role>" for a chat's turns of that role (summed per row). */
  field: string;
}

export interface DatasetStats<R> {
  rows: number;
  /** Rows identical to an earlier row (what `dedupe` would remove). */
  duplicates: number;
  unit: "tokens" | "characters";
  fields: FieldStats[];
  /** In file order. */
  examples: DatasetRow<R>[];
}

export function datasetStats<R extends object>(
  rows: readonly DatasetRow<R>[],
  options: DatasetStatsOptions = {},
): DatasetStats<R> {
  return computeStats(rows, parseOptions(DatasetStatsOptions, options, "datasetStats"));
}

/** For cells that validated the options under their own name. */
export function computeStats<R extends object>(
  rows: readonly DatasetRow<R>[],
  o: z.output<typeof DatasetStatsOptions>,
): DatasetStats<R> {
  const tokenizer = o.tokenizer;
  const length = tokenizer ? (text: string) => tokenizer.encode(text).length : (text: string) => [...text].length;
  const lengths = new Map<string, number[]>();
  for (const { row } of rows) {
    for (const [field, texts] of textFields(row)) {
      const total = texts.reduce((sum, t) => sum + length(t), 0);
      const values = lengths.get(field);
      if (values) values.push(total);
      else lengths.set(field, [total]);
    }
  }
  return {
    rows: rows.length,
    duplicates: rows.length - new Set(rows.map(({ row }) => canonicalJson(row))).size,
    unit: tokenizer ? "tokens" : "characters",
    fields: [...lengths].map(([field, values]) => ({ field, ...distribution(values, o.bins) })),
    examples: seededShuffle([...rows.keys()], o.seed)
      .slice(0, o.examples)
      .sort((a, b) => a - b)
      .map((i) => rows[i]!),
  };
}
