/** Pushing folders to the Hugging Face Hub, from a notebook or the CLI (`thinkcells push`). */
export { HubError } from "./errors.ts";
export type { PushProgress } from "./progress.ts";
export { type PushOptions, type PushResult, pushToHub } from "./push.ts";
