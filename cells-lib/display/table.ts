/** `table(rows)`: records shown as an HTML table in notebooks and aligned text elsewhere. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { currentRenderer } from "./renderer.ts";
import { tableHtml } from "./table-html.ts";
import { type Row, tableModel } from "./table-model.ts";
import { tableText } from "./table-text.ts";
import type { MimeBundle } from "./types.ts";

const TableOptions = z
  .object({
    /** Which columns, in order (default: every key, in order of first appearance). For array
     * rows: the columns' names. */
    columns: z.array(z.string()).min(1).optional(),
    title: z.string().optional(),
    /** Longer tables show their first and last rows around a gap. */
    maxRows: z.number().int().min(1).default(60),
  })
  .strict();
export type TableOptions = z.input<typeof TableOptions>;

export function tableBundle(rows: readonly Row[], options: TableOptions = {}): MimeBundle {
  const o = parseOptions(TableOptions, options, "table");
  const model = tableModel(rows, { columns: o.columns, title: o.title, maxRows: o.maxRows });
  return { "text/html": tableHtml(model), "text/plain": tableText(model) };
}

export function table(rows: readonly Row[], options: TableOptions = {}): void {
  currentRenderer().display(tableBundle(rows, options));
}
