/** zod parsing with errors a notebook user can act on: which cell, which option, what was expected. */
import { z } from "zod";

/** `signal`: stops the run when it is aborted. (z.custom, not z.instanceof: Deno's types give
 * z.instanceof(AbortSignal) an undefined output.) */
export const AbortSignalOption = z.custom<AbortSignal>((v) => v instanceof AbortSignal, "must be an AbortSignal");

export class OptionsError extends Error {
  override name = "OptionsError";
}

export function parseOptions<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys") {
      return `unknown option${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
    }
    const field = issue.path.length ? `option "${issue.path.join(".")}"` : "options";
    return `${field}: ${issue.message}`;
  });
  return failWith(`${where}: ${problems.join("; ")}`);
}

function failWith(message: string): never {
  throw new OptionsError(message);
}
