/** Checkpoint stores (local directory, Google Drive, S3) and a manager that saves, prunes and restores. */
export { driveStore, localStore } from "./local-store.ts";
export { CheckpointManager, type CheckpointManagerOptions, type SaveResult, stepName } from "./manager.ts";
export { choosePruned, metricValue, type PruneOptions } from "./prune.ts";
export { type S3StoreOptions, s3Store } from "./s3-store.ts";
export { type CheckpointEntry, CheckpointError, type CheckpointMetaInput, type CheckpointStore } from "./store.ts";
