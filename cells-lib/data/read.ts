/** Reads a data file into rows with their lines, choosing the format by extension. */
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { isNotFound } from "../tokenizer/files.ts";
import { parseCsv } from "./csv.ts";
import { DatasetError } from "./errors.ts";
import { parseJsonArray } from "./json-array.ts";
import { parseJsonl } from "./jsonl.ts";
import type { DatasetRow } from "./types.ts";

const PARSERS: Record<string, (text: string, file: string) => DatasetRow<unknown>[]> = {
  ".jsonl": parseJsonl,
  ".json": parseJsonArray,
  ".csv": parseCsv,
};

/** Unvalidated rows of a .jsonl, .json (an array) or .csv file; never empty. */
export async function readRows(file: string): Promise<DatasetRow<unknown>[]> {
  const ext = extname(file).toLowerCase();
  const parse = PARSERS[ext];
  if (!parse) {
    throw new DatasetError(
      `${file}: cannot tell the format from the extension ${ext ? `"${ext}"` : "(none)"}; expected .jsonl, .json or .csv`,
    );
  }
  const text = decodeUtf8(await readBytes(file), file);
  if (text.trim() === "") throw new DatasetError(`${file} is empty`);
  const rows = parse(text, file);
  if (rows.length === 0) throw new DatasetError(`${file} has no rows`);
  return rows;
}

async function readBytes(file: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isNotFound(err)) throw new DatasetError(`${file} does not exist`);
    throw new DatasetError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Fatal, so that text in another encoding is an error instead of rows full of U+FFFD; it also
 * drops the byte-order mark spreadsheet exports often start with (JSON.parse rejects it). */
const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new DatasetError(`${file} line ${firstInvalidLine(bytes)}: invalid UTF-8 (save the file as UTF-8 text)`);
  }
}

/** A line feed byte never occurs inside a multi-byte UTF-8 sequence, so each line can be checked
 * on its own. */
function firstInvalidLine(bytes: Uint8Array): number {
  let start = 0;
  for (let line = 1; ; line++) {
    const end = bytes.indexOf(0x0a, start);
    if (end === -1 || !isUtf8(bytes.subarray(start, end))) return line;
    start = end + 1;
  }
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
