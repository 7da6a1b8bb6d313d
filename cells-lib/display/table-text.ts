/** A table as aligned plain text (terminals, logs, text/plain). */
import { textWidth, truncate } from "./format.ts";
import type { TableModel } from "./table-model.ts";

/** Long cells (completions, prompts) are cut so one row stays one line. */
const MAX_CELL_WIDTH = 60;

export function tableText(model: TableModel): string {
  const oneLine = (text: string) => truncate(text.replace(/\r?\n/g, "↵").replace(/\t/g, " "), MAX_CELL_WIDTH);
  const header = model.columns.map(oneLine);
  const body = model.cells.map((row) => row.map(oneLine));
  const widths = header.map((h, c) => Math.max(textWidth(h), ...body.map((row) => textWidth(row[c] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => {
        const pad = " ".repeat(widths[c]! - textWidth(cell));
        return model.numeric[c] ? pad + cell : cell + pad;
      })
      .join("  ")
      .trimEnd();

  const lines: string[] = [];
  if (model.title !== undefined) lines.push(model.title);
  if (model.columns.length === 0) {
    lines.push("(no rows)");
    return lines.join("\n");
  }
  lines.push(line(header), widths.map((w) => "-".repeat(w)).join("  "));
  body.forEach((row, r) => {
    if (r === model.gapAt && model.omitted > 0) lines.push(gapText(model.omitted));
    lines.push(line(row));
  });
  if (model.gapAt >= body.length && model.omitted > 0) lines.push(gapText(model.omitted));
  if (body.length === 0) lines.push("(no rows)");
  return lines.join("\n");
}

export function gapText(omitted: number): string {
  return `… ${omitted} more row${omitted === 1 ? "" : "s"} …`;
}
