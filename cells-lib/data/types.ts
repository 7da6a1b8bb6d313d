/** What the data modules pass around: rows that remember where in their file they came from. */

/** One row and the 1-based line of its file where it starts, so any report can point back to it. */
export interface DatasetRow<R> {
  line: number;
  row: R;
}

/** The validated rows of one file. */
export interface LoadedRows<R> {
  file: string;
  rows: DatasetRow<R>[];
}
