/** Repo ids as the Hub accepts them, checked before any request so a typo fails with a message
 * that says what is allowed instead of the Hub's 400 or 404. */
import { HubError } from "./errors.ts";

export interface HubRepo {
  type: "model" | "dataset";
  /** "namespace/name" */
  name: string;
  /** The id as @huggingface/hub takes it: "namespace/name" or "datasets/namespace/name". */
  designation: string;
}

/** The Hub's rule (huggingface_hub's validate_repo_id): word characters, "-" and ".", at most
 * 96, starting and ending with a letter, digit or "_", without "--" or "..". */
const PART = /^(?!.*(?:--|\.\.))\w(?:[\w.-]{0,94}\w)?$/;

export function parseRepoId(repoId: string): HubRepo {
  const dataset = repoId.startsWith("datasets/");
  const name = dataset ? repoId.slice("datasets/".length) : repoId;
  const parts = name.split("/");
  if (parts.length !== 2 || !parts.every((p) => PART.test(p)) || name.endsWith(".git")) {
    throw new HubError(
      `pushToHub: repo id ${JSON.stringify(repoId)} is not valid: expected "namespace/name" (a model) or "datasets/namespace/name", ` +
        `each part 1–96 letters, digits, "_", "-" or ".", starting and ending with a letter, digit or "_", without "--" or ".."`,
    );
  }
  return { type: dataset ? "dataset" : "model", name, designation: repoId };
}

/** The repo's page on the Hub. */
export function repoUrl(endpoint: string, repo: HubRepo): string {
  return `${endpoint}/${repo.type === "dataset" ? "datasets/" : ""}${repo.name}`;
}
