/** A JSON file holding one array of rows; each row keeps the line its element starts on. */
import { DatasetError } from "./errors.ts";
import { lineAt } from "./lines.ts";
import type { DatasetRow } from "./types.ts";

export function parseJsonArray(text: string, file: string): DatasetRow<unknown>[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    throw new DatasetError(`${file} line ${errorLine(text, message)}: invalid JSON: ${message}`);
  }
  if (!Array.isArray(value)) {
    const got = value === null ? "null" : typeof value === "object" ? "an object" : typeof value;
    throw new DatasetError(
      `${file}: expected a JSON array of rows, got ${got} (for one JSON object per line, name the file .jsonl)`,
    );
  }
  const lines = elementLines(text);
  return value.map((row: unknown, i) => ({ line: lines[i]!, row }));
}

/** V8 reports where parsing failed as a character position; without one the input ended early. */
function errorLine(text: string, message: string): number {
  const position = /at position (\d+)/.exec(message);
  const end = position ? Number(position[1]) : text.length;
  return lineAt(text, end);
}

/** The line on which each element of the top-level array starts, for text JSON.parse accepted. */
function elementLines(text: string): number[] {
  const starts: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expectElement = false;
  for (const c of text) {
    if (c === "\n") line++;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (depth === 1 && expectElement && !/[\s\]]/.test(c)) {
      starts.push(line);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === "[" || c === "{") expectElement = ++depth === 1;
    else if (c === "]" || c === "}") depth--;
    else if (c === "," && depth === 1) expectElement = true;
  }
  return starts;
}
