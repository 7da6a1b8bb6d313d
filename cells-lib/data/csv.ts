/** CSV with a header row: each record becomes an object of strings keyed by column name. */
import { parse } from "csv-parse/sync";
import { DatasetError } from "./errors.ts";
import { lineAt } from "./lines.ts";
import type { DatasetRow } from "./types.ts";

export function parseCsv(text: string, file: string): DatasetRow<unknown>[] {
  // csv-parse miscounts lines in CRLF files whose quoted fields hold line breaks.
  const normalized = text.replace(/\r\n/g, "\n");
  let records: { record: Record<string, string>; raw: string; info: { lines: number } }[];
  try {
    records = parse(normalized, { columns: true, info: true, raw: true, skip_empty_lines: true });
  } catch (err) {
    // csv-parse reports an unclosed quote at the end of the file; the place to fix is where it opened.
    if ((err as { code?: unknown }).code === "CSV_QUOTE_NOT_CLOSED") {
      throw new DatasetError(
        `${file} line ${unclosedQuoteLine(normalized)}: invalid CSV: the quote opened here is never closed`,
      );
    }
    const line = (err as { lines?: unknown }).lines;
    throw new DatasetError(
      `${file}${typeof line === "number" ? ` line ${line}` : ""}: invalid CSV: ${(err as Error).message}`,
    );
  }
  return records.map(({ record, raw, info }) => ({ line: info.lines - lineBreaksWithin(raw), row: record }));
}

/** info.lines is the line a record ends on; a record with quoted line breaks starts earlier.
 * `raw` also carries skipped blank lines before the record and its own line break. */
function lineBreaksWithin(raw: string): number {
  const record = raw.replace(/^\n+/, "").replace(/\n$/, "");
  return record.split("\n").length - 1;
}

/** The line of the last quote that opens a field, for text that ends inside a quoted field: a
 * quote opens a field right after a comma or line break, and "" inside one is a literal quote. */
function unclosedQuoteLine(text: string): number {
  let opened = text.length;
  let quoted = false;
  let fieldStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') i++;
      else if (c === '"') quoted = false;
      continue;
    }
    if (c === '"' && fieldStart) {
      quoted = true;
      opened = i;
    }
    fieldStart = c === "," || c === "\n";
  }
  return lineAt(text, opened);
}
