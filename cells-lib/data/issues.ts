/** zod issues about one row, as sentences: which field, what was expected, what was there. */
import type { z } from "zod";
import { describeValue, valueAt } from "../util/options.ts";

export function describeIssue(issue: z.core.$ZodIssue, row: unknown): string {
  const field = issue.path.length ? `field "${issue.path.map(String).join(".")}": ` : "";
  const value = valueAt(row, issue.path);
  const got = value === undefined && issue.path.length ? "but it is missing" : `got ${describeValue(value)}`;
  return `${field}${expectation(issue)}, ${got}`;
}

function expectation(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type")
    return `expected ${withArticle(issue.expected === "int" ? "integer" : issue.expected)}`;
  if (issue.code === "invalid_value") return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
  // The schemas here word their own messages as expectations ("expected at least one message").
  return issue.message;
}

function withArticle(noun: string): string {
  return `${/^[aeiou]/.test(noun) ? "an" : "a"} ${noun}`;
}
