/** Pushing folders to the Hugging Face Hub, from a notebook or the CLI (`thinkcells push`). */
export { HubError } from "./errors.ts";
export type { PushProgress } from "./progress.ts";
export { pushToHub, type PushOptions, type PushResult } from "./push.ts";
