/** A table as HTML (notebook front ends). */
import { escapeHtml } from "./html.ts";
import type { TableModel } from "./table-model.ts";
import { gapText } from "./table-text.ts";

export function tableHtml(model: TableModel): string {
  const align = (c: number) =>
    model.numeric[c] ? "text-align:right;font-variant-numeric:tabular-nums" : "text-align:left;white-space:pre-wrap";
  const cell = (tag: "th" | "td", text: string, c: number) =>
    `<${tag} style="${align(c)}">${escapeHtml(text)}</${tag}>`;
  const gapRow = `<tr><td colspan="${Math.max(1, model.columns.length)}" style="text-align:center">${escapeHtml(gapText(model.omitted))}</td></tr>`;

  const rows: string[] = [];
  model.cells.forEach((row, r) => {
    if (r === model.gapAt && model.omitted > 0) rows.push(gapRow);
    rows.push(`<tr>${row.map((text, c) => cell("td", text, c)).join("")}</tr>`);
  });
  if (model.gapAt >= model.cells.length && model.omitted > 0) rows.push(gapRow);
  if (model.cells.length === 0) rows.push(`<tr><td colspan="${Math.max(1, model.columns.length)}">(no rows)</td></tr>`);

  const caption =
    model.title === undefined
      ? ""
      : `<caption style="text-align:left;font-weight:bold">${escapeHtml(model.title)}</caption>`;
  const head = model.columns.length
    ? `<thead><tr>${model.columns.map((name, c) => cell("th", name, c)).join("")}</tr></thead>`
    : "";
  return `<table class="thinkcells-table">${caption}${head}<tbody>${rows.join("")}</tbody></table>`;
}
