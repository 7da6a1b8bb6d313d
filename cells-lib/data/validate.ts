/** Checks every row against a schema and reports the first few bad rows, not just the first. */
import type { z } from "zod";
import { DatasetError } from "./errors.ts";
import { describeIssue } from "./issues.ts";
import type { DatasetRow } from "./types.ts";

const MAX_REPORTED = 5;

/** The parsed rows; `what` names the expected rows in the error, e.g. "gsm8k rows {question, answer}". */
export function validateRows<S extends z.ZodType>(
  file: string,
  rows: readonly DatasetRow<unknown>[],
  schema: S,
  what: string,
): DatasetRow<z.output<S>>[] {
  const valid: DatasetRow<z.output<S>>[] = [];
  const problems: string[] = [];
  for (const { line, row } of rows) {
    const result = schema.safeParse(row);
    if (result.success) valid.push({ line, row: result.data });
    else
      problems.push(
        `${file} line ${line}: ${result.error.issues.map((issue) => describeIssue(issue, row)).join("; ")}`,
      );
  }
  if (problems.length === 0) return valid;
  const more = problems.length - MAX_REPORTED;
  const listed = [...problems.slice(0, MAX_REPORTED), ...(more > 0 ? [`…and ${more} more`] : [])];
  throw new DatasetError(
    `${file}: ${problems.length} of ${rows.length} rows are not valid ${what}:\n  ${listed.join("\n  ")}`,
  );
}
