/** Where to push and as whom: the token and Hub URL, from options or the environment (the same
 * variables as the Python `huggingface_hub`, so one CI secret serves both). */

import process from "node:process";
import { HUB_URL } from "@huggingface/hub";
import { type Credential, HubError } from "./errors.ts";

const TOKEN_VARIABLES = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] as const;

export function resolveCredential(token: string | undefined): Credential {
  const found =
    token !== undefined
      ? { token, source: "option token" }
      : TOKEN_VARIABLES.map((name) => ({ token: process.env[name] ?? "", source: name })).find((c) => c.token !== "");
  if (!found) {
    throw new HubError(
      "pushToHub: no Hugging Face token: set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens), or pass { token }",
    );
  }
  // @huggingface/hub rejects other tokens too, but with a message that does not say which setting to fix.
  if (!found.token.startsWith("hf_"))
    throw new HubError(
      `pushToHub: the token from ${found.source} is not a Hugging Face token (those start with "hf_")`,
    );
  return found;
}

/** The Hub's base URL without a trailing slash: the option, else HF_ENDPOINT, else huggingface.co. */
export function resolveEndpoint(endpoint: string | undefined): string {
  const [value, source] =
    endpoint !== undefined
      ? [endpoint, "option endpoint"]
      : process.env.HF_ENDPOINT
        ? [process.env.HF_ENDPOINT, "HF_ENDPOINT"]
        : [HUB_URL, ""];
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new HubError(`pushToHub: ${source} ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new HubError(`pushToHub: ${source} must be an http(s) URL, got ${JSON.stringify(value)}`);
  return value.replace(/\/+$/, "");
}
