/** Rows of records (or arrays) → the columns and cell texts both table renderings share. */
import { OptionsError } from "../util/options.ts";
import { formatValue } from "./format.ts";

export type Row = Readonly<Record<string, unknown>> | readonly unknown[];

export interface TableModel {
  title?: string;
  columns: string[];
  /** Right-aligned columns: every filled cell holds a number. */
  numeric: boolean[];
  /** Cell texts of the rows shown: the first rows, then (after `gapAt`) the last ones. */
  cells: string[][];
  /** Rows left out in the middle (maxRows), shown as a gap before `cells[gapAt]`. */
  omitted: number;
  gapAt: number;
}

export interface TableModelOptions {
  columns?: readonly string[];
  title?: string;
  maxRows: number;
}

export function tableModel(rows: unknown, options: TableModelOptions): TableModel {
  const checked = checkRows(rows);
  const arrays = checked.length > 0 && Array.isArray(checked[0]);
  const columns = options.columns ? [...options.columns] : arrays ? indexColumns(checked) : keyColumns(checked);
  const cellOf = (row: Row, c: number): unknown =>
    Array.isArray(row) ? row[c] : (row as Record<string, unknown>)[columns[c]!];

  // The head and the tail of a long table: a training log's first and latest steps.
  const head = Math.min(checked.length, Math.ceil(options.maxRows / 2));
  const tail = Math.min(checked.length - head, options.maxRows - head);
  const shown = [...checked.slice(0, head), ...checked.slice(checked.length - tail)];
  const numeric = columns.map((_, c) => {
    const filled = checked.map((r) => cellOf(r, c)).filter((v) => v !== null && v !== undefined && v !== "");
    return filled.length > 0 && filled.every((v) => typeof v === "number" || typeof v === "bigint");
  });
  const model: TableModel = {
    columns,
    numeric,
    cells: shown.map((row) => columns.map((_, c) => formatValue(cellOf(row, c)))),
    omitted: checked.length - shown.length,
    gapAt: head,
  };
  if (options.title !== undefined) model.title = options.title;
  return model;
}

function checkRows(rows: unknown): Row[] {
  if (!Array.isArray(rows)) {
    throw new OptionsError(`table: rows must be an array (one object or array per row), got ${describe(rows)}`);
  }
  let arrays: boolean | undefined;
  rows.forEach((row: unknown, i) => {
    if (typeof row !== "object" || row === null) {
      throw new OptionsError(`table: row ${i} is ${describe(row)}; each row must be an object (or an array)`);
    }
    arrays ??= Array.isArray(row);
    if (arrays !== Array.isArray(row)) {
      throw new OptionsError(`table: row ${i} mixes arrays and objects; rows must be all objects or all arrays`);
    }
  });
  return rows as Row[];
}

function keyColumns(rows: Row[]): string[] {
  const keys = new Set<string>();
  for (const row of rows) for (const k of Object.keys(row)) keys.add(k);
  return [...keys];
}

function indexColumns(rows: Row[]): string[] {
  const width = Math.max(0, ...rows.map((r) => (r as readonly unknown[]).length));
  return Array.from({ length: width }, (_, i) => String(i));
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `${typeof value} ${formatValue(value)}`;
}
