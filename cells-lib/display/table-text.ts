/** A table as aligned plain text (terminals, logs, text/plain). */
import { textWidth, truncate } from "./format.ts";
import type { TableModel } from "./table-model.ts";

/** Long cells (completions, prompts) are cut so one row stays one line. */
const MAX_CELL_WIDTH = 60;

export function tableText(model: TableModel): string {
  const oneLine = (text: string) => truncate(printable(text), MAX_CELL_WIDTH);
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

/** One line of inert text: line breaks as ↵, tabs as spaces, and other control characters as
 * their visible symbols (ESC as ␛). A sampled completion can hold any of them, and printed raw
 * a carriage return or an escape sequence would move the cursor and overwrite other lines of the
 * table (its header among them) in a terminal or a notebook's text output. */
export function printable(text: string): string {
  return (
    text
      .replace(/\r\n|\n|\r/g, "↵")
      .replace(/\t/g, " ")
      // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
      .replace(/[\u0000-\u001f\u007f]/g, (c) => String.fromCharCode(c === "\u007f" ? 0x2421 : 0x2400 + c.charCodeAt(0)))
      .replace(/[\u0080-\u009f]/g, "\ufffd")
  );
}

export function gapText(omitted: number): string {
  return `… ${omitted} more row${omitted === 1 ? "" : "s"} …`;
}
