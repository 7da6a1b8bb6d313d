/** Errors end up in notebook outputs and logs, so any credential string that could have slipped
 * into one is blanked before it leaves a store. */

/** Secrets shorter than this are not credentials and would blank ordinary words. */
const MIN_SECRET_LENGTH = 8;

export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= MIN_SECRET_LENGTH) out = out.split(secret).join("[redacted]");
  }
  return out;
}

/** One line per cause: the error's name, its code when it has one, and its message (an
 * AggregateError, as from a refused connection, has only its inner errors' messages). */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const message = err.message || (err instanceof AggregateError ? err.errors.map(describeError).join("; ") : "");
  return `${err.name}${typeof code === "string" && code !== err.name ? ` (${code})` : ""}: ${message}`;
}
