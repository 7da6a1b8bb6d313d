/** Push errors. Their messages end up in notebook outputs and CI logs, so anything quoted from the
 * Hub or the network has the token blanked, and the original error is not kept as `cause`
 * (printing an error prints its cause chain, unredacted). */
import { HubApiError } from "@huggingface/hub";
import { describeError, redact } from "../checkpoints/redact.ts";

export class HubError extends Error {
  override name = "HubError";
}

/** The token and where it came from ("HF_TOKEN", "option token"), for hints that name it. */
export interface Credential {
  token: string;
  source: string;
}

/** `err` from a Hub call made during `what` (e.g. "creating repo user/model"), as a HubError. */
export function hubFailure(what: string, err: unknown, credential: Credential): HubError {
  if (err instanceof HubError) return err;
  const detail =
    err instanceof HubApiError
      ? `HTTP ${err.statusCode}: ${err.message}${hint(err.statusCode, credential)}`
      : describeChain(err);
  return new HubError(redact(`pushToHub: ${what} failed: ${detail}`, [credential.token]));
}

function hint(status: number, credential: Credential): string {
  if (status === 401) return ` (the Hub refused the token from ${credential.source}: is it a current token?)`;
  if (status === 403) return ` (the token from ${credential.source} needs write access to this repo)`;
  return "";
}

/** fetch() fails with "fetch failed" and puts the reason (ECONNREFUSED, a TLS error) in `cause`. */
function describeChain(err: unknown): string {
  const cause = err instanceof Error ? err.cause : undefined;
  return cause === undefined ? describeError(err) : `${describeError(err)} (${describeChain(cause)})`;
}
