/** Pushing folders to the Hugging Face Hub, from a notebook (pushToHub) or the CLI (pushCommand). */
export { pushCommand, PushUsageError, pushUsage } from "./command.ts";
export { HubError } from "./errors.ts";
export type { PushProgress } from "./progress.ts";
export { pushToHub, type PushOptions, type PushResult } from "./push.ts";
