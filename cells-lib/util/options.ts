/** zod parsing with errors a notebook user can act on: which cell, which option, what was expected. */
import { z } from "zod";

/** `signal`: stops the run when it is aborted. (z.custom, not z.instanceof: Deno's types give
 * z.instanceof(AbortSignal) an undefined output.) */
export const AbortSignalOption = z.custom<AbortSignal>((v) => v instanceof AbortSignal, "must be an AbortSignal");

/** One problem with a cell's options (or a row), as data: where it is, what was expected, what was there. */
export interface OptionIssue {
  /** Where the problem is: option names and array indices, outermost first ([] for the options as a whole). */
  readonly path: readonly (string | number)[];
  /** zod's issue code ("invalid_type", "unrecognized_keys", ...), or "custom" for a check written by hand. */
  readonly code: string;
  readonly message: string;
  /** What the schema wanted ("number", "one of \"a\", \"b\"", ">= 1"), when zod says. */
  readonly expected?: string;
  /** What was there ("\"abc\"", "an array", "nothing"), when the value was given. */
  readonly received?: string;
}

export class OptionsError extends Error {
  override name = "OptionsError";
  /** The cell (or function) whose options were wrong. */
  readonly where: string;
  /** The problems, one per zod issue (an unknown option is one issue per name); [] for an error thrown by hand. */
  readonly issues: readonly OptionIssue[];

  constructor(message: string, details: { where?: string; issues?: readonly OptionIssue[] } = {}) {
    super(message);
    this.where = details.where ?? /^([\w.]+): /.exec(message)?.[1] ?? "";
    this.issues = details.issues ?? [];
  }

  /** The error for a failed zod parse of `value`, its message rendered by formatIssues. */
  static fromZod(error: z.ZodError, value: unknown, where: string): OptionsError {
    const issues = issuesFrom(error, value);
    return new OptionsError(`${where}: ${formatIssues(issues)}`, { where, issues });
  }
}

export function parseOptions<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const input = value ?? {};
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw OptionsError.fromZod(result.error, input, where);
}

/** zod's issues as OptionIssues; `value` (what was parsed) supplies `received`. */
export function issuesFrom(error: z.ZodError, value: unknown): OptionIssue[] {
  return error.issues.flatMap((issue): OptionIssue[] => {
    const path = issue.path.map((key) => (typeof key === "number" ? key : String(key)));
    if (issue.code === "unrecognized_keys") {
      const at = valueAt(value, path);
      return issue.keys.map((key) => ({
        path: [...path, key],
        code: issue.code,
        message: `Unrecognized key: "${key}"`,
        received: describeValue(valueAt(at, [key])),
      }));
    }
    const expected = expectedOf(issue);
    const received = describeValue(valueAt(value, path));
    return [{ path, code: issue.code, message: issue.message, ...(expected !== undefined && { expected }), received }];
  });
}

/** How `formatIssues` names what an issue is about: a cell's "option" (`option "a.b": ...`) or a
 * row's "field" (`"a.b" ...`). */
export type IssueSubject = "option" | "field";

/** The one rendering of OptionIssues as a message: `option "lr": Too small: expected number to be
 * >0; unknown options "a", "b"` (subject "option") or `"prompt" Invalid input: ...` (subject "field"). */
export function formatIssues(issues: readonly OptionIssue[], subject: IssueSubject = "option"): string {
  const parts: (string | string[])[] = []; // a string[]: the unknown names under one parent, rendered below
  const unknown = new Map<string, string[]>();
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const parent = issue.path.slice(0, -1).join(".");
      let names = unknown.get(parent);
      if (!names) {
        names = [];
        unknown.set(parent, names);
        parts.push(names);
      }
      names.push(String(issue.path[issue.path.length - 1]));
      continue;
    }
    const name = issue.path.join(".");
    if (subject === "option") parts.push(`${name ? `option "${name}"` : "options"}: ${issue.message}`);
    else parts.push(`${name ? `"${name}" ` : ""}${issue.message}`);
  }
  return parts
    .map((part) =>
      typeof part === "string"
        ? part
        : `unknown ${subject}${part.length > 1 ? "s" : ""} ${part.map((k) => `"${k}"`).join(", ")}`,
    )
    .join("; ");
}

function expectedOf(issue: z.core.$ZodIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return issue.expected;
    case "invalid_value":
      return `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "too_small":
      return `${issue.origin} ${issue.inclusive === false ? ">" : ">="} ${String(issue.minimum)}`;
    case "too_big":
      return `${issue.origin} ${issue.inclusive === false ? "<" : "<="} ${String(issue.maximum)}`;
    case "invalid_format":
      return issue.format;
    default:
      return undefined;
  }
}

/** The value at `path` inside `value`, or undefined where the path leads nowhere. */
export function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let at = value;
  for (const key of path) {
    if (typeof at !== "object" || at === null) return undefined;
    at = (at as Record<PropertyKey, unknown>)[key];
  }
  return at;
}

const MAX_SHOWN = 40;

/** A short description of a value for a message: a string quoted (and cut), "an array", "an object", a number. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  if (typeof value !== "string") return String(value);
  const shown = JSON.stringify(value);
  return shown.length <= MAX_SHOWN ? shown : `${shown.slice(0, MAX_SHOWN - 1)}…"`;
}
