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
    throw new DatasetError(`${file}: cannot tell the format from the extension ${ext ? `"${ext}"` : "(none)"}; expected .jsonl, .json or .csv`);
  }
  const text = stripBom(await readText(file));
  if (text.trim() === "") throw new DatasetError(`${file} is empty`);
  const rows = parse(text, file);
  if (rows.length === 0) throw new DatasetError(`${file} has no rows`);
  return rows;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if (isNotFound(err)) throw new DatasetError(`${file} does not exist`);
    throw new DatasetError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Spreadsheet exports often start with a byte-order mark, which JSON.parse rejects. */
function stripBom(text: string): string {
  return text.startsWith("\uFEFF") ? text.slice(1) : text;
}
