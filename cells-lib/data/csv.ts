/** CSV with a header row: each record becomes an object of strings keyed by column name. */
import { parse } from "csv-parse/sync";
import { DatasetError } from "./errors.ts";
import type { DatasetRow } from "./types.ts";

export function parseCsv(text: string, file: string): DatasetRow<unknown>[] {
  // csv-parse miscounts lines in CRLF files whose quoted fields hold line breaks.
  const normalized = text.replace(/\r\n/g, "\n");
  let records: { record: Record<string, string>; raw: string; info: { lines: number } }[];
  try {
    records = parse(normalized, { columns: true, info: true, raw: true, skip_empty_lines: true });
  } catch (err) {
    const line = (err as { lines?: unknown }).lines;
    throw new DatasetError(`${file}${typeof line === "number" ? ` line ${line}` : ""}: invalid CSV: ${(err as Error).message}`);
  }
  return records.map(({ record, raw, info }) => ({ line: info.lines - lineBreaksWithin(raw), row: record }));
}

/** info.lines is the line a record ends on; a record with quoted line breaks starts earlier.
 * `raw` also carries skipped blank lines before the record and its own line break. */
function lineBreaksWithin(raw: string): number {
  const record = raw.replace(/^\n+/, "").replace(/\n$/, "");
  return record.split("\n").length - 1;
}
