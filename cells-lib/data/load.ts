/** `loadDataset(file, { shape })`: a training data file as typed, validated rows. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { DatasetError } from "./errors.ts";
import { readRows } from "./read.ts";
import { describeShape, detectShape, type RowOf, SHAPE_NAMES, SHAPES, type ShapeName } from "./shapes.ts";
import type { DatasetRow, LoadedRows } from "./types.ts";
import { validateRows } from "./validate.ts";

const LoadDatasetOptions = z
  .object({
    /** "auto" picks the shape from the first row's keys. */
    shape: z.enum([...SHAPE_NAMES, "auto"]).default("auto"),
  })
  .strict();
export type LoadDatasetOptions = z.input<typeof LoadDatasetOptions>;

export interface Dataset<S extends ShapeName> extends LoadedRows<RowOf<S>> {
  shape: S;
}

/** A dataset of any shape; check `shape` to narrow its rows' type. */
export type AnyDataset = { [S in ShapeName]: Dataset<S> }[ShapeName];

export async function loadDataset<S extends ShapeName>(file: string, options: { shape: S }): Promise<Dataset<S>>;
export async function loadDataset(file: string, options?: LoadDatasetOptions): Promise<AnyDataset>;
export async function loadDataset(file: string, options: LoadDatasetOptions = {}): Promise<AnyDataset> {
  const o = parseOptions(LoadDatasetOptions, options, "loadDataset");
  const rows = await readRows(file);
  const shape = o.shape === "auto" ? shapeOfFirstRow(file, rows[0]!) : o.shape;
  const valid = validateRows(file, rows, SHAPES[shape], `${shape} rows ${describeShape(shape)}`);
  return { file, shape, rows: valid } as AnyDataset;
}

function shapeOfFirstRow(file: string, first: DatasetRow<unknown>): ShapeName {
  const shape = detectShape(first.row);
  if (shape) return shape;
  const known = SHAPE_NAMES.map((s) => `${s} ${describeShape(s)}`).join(", ");
  throw new DatasetError(
    `${file} line ${first.line}: cannot detect the dataset's shape from the first row, which has ${keysOf(first.row)}; ` +
      `known shapes: ${known}. Rename the columns or pass { shape } to loadDataset.`,
  );
}

function keysOf(row: unknown): string {
  if (Array.isArray(row)) return "no keys (it is an array)";
  if (typeof row !== "object" || row === null) return `no keys (it is ${row === null ? "null" : `a ${typeof row}`})`;
  const keys = Object.keys(row);
  return keys.length ? `keys ${keys.map((k) => `"${k}"`).join(", ")}` : "no keys";
}
