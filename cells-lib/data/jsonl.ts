/** JSON Lines: one JSON value per line; blank lines are skipped. */
import { DatasetError } from "./errors.ts";
import type { DatasetRow } from "./types.ts";

export function parseJsonl(text: string, file: string): DatasetRow<unknown>[] {
  const rows: DatasetRow<unknown>[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const source = lines[i]!.trim();
    if (source === "") continue;
    try {
      rows.push({ line: i + 1, row: JSON.parse(source) });
    } catch (err) {
      throw new DatasetError(`${file} line ${i + 1}: invalid JSON: ${(err as Error).message}`);
    }
  }
  return rows;
}
