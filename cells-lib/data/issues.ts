/** zod issues about one row, as sentences: which field, what was expected, what was there. */
import type { z } from "zod";

export function describeIssue(issue: z.core.$ZodIssue, row: unknown): string {
  const field = issue.path.length ? `field "${issue.path.map(String).join(".")}": ` : "";
  const value = valueAt(row, issue.path);
  const got = value === undefined && issue.path.length ? "but it is missing" : `got ${describeValue(value)}`;
  return `${field}${expectation(issue)}, ${got}`;
}

function expectation(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type") return `expected ${withArticle(issue.expected === "int" ? "integer" : issue.expected)}`;
  if (issue.code === "invalid_value") return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
  // The schemas here word their own messages as expectations ("expected at least one message").
  return issue.message;
}

function withArticle(noun: string): string {
  return `${/^[aeiou]/.test(noun) ? "an" : "a"} ${noun}`;
}

function valueAt(row: unknown, path: readonly PropertyKey[]): unknown {
  let value = row;
  for (const key of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

const MAX_SHOWN = 40;

function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object" && value !== null) return "an object";
  if (typeof value !== "string") return String(value);
  const shown = JSON.stringify(value);
  return shown.length <= MAX_SHOWN ? shown : `${shown.slice(0, MAX_SHOWN - 1)}…"`;
}
