/** Checkpoint stores (local directory, Google Drive, S3) and a manager that saves, prunes and restores. */
export { driveStore, localStore } from "./local-store.ts";
export { CheckpointManager, stepName, type CheckpointManagerOptions, type SaveResult } from "./manager.ts";
export { choosePruned, metricValue, type PruneOptions } from "./prune.ts";
export { s3Store, type S3StoreOptions } from "./s3-store.ts";
export { CheckpointError, type CheckpointEntry, type CheckpointMetaInput, type CheckpointStore } from "./store.ts";
