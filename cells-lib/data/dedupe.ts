/** `dedupe(rows)`: drops repeated rows, keeping each one's first occurrence. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { canonicalJson } from "./canonical-json.ts";
import type { DatasetRow } from "./types.ts";

const DedupeOptions = z
  .object({
    key: z
      .custom<(row: unknown) => unknown>((v) => typeof v === "function", "expected a function (row) => key")
      .optional(),
  })
  .strict();

export interface DedupeOptions<R> {
  /** Rows with equal keys (compared as JSON) are duplicates. Default: the whole row. */
  key?: (row: R) => unknown;
}

export interface DedupeResult<R> {
  rows: DatasetRow<R>[];
  removed: number;
}

export function dedupe<R>(rows: readonly DatasetRow<R>[], options: DedupeOptions<R> = {}): DedupeResult<R> {
  const key = parseOptions(DedupeOptions, options, "dedupe").key ?? ((row: unknown) => row);
  const seen = new Set<string>();
  const kept = rows.filter(({ row }) => {
    const k = canonicalJson(key(row));
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  return { rows: kept, removed: rows.length - kept.length };
}
