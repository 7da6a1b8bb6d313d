/** One interface for every place a checkpoint can live (a local directory, Google Drive, S3),
 * so the training loop and the manager never care which one they were given. */

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What a caller may hand in as metadata: any JSON-serialisable object. It is stored as JSON,
 * so non-finite numbers (a NaN loss) come back as null and undefined fields disappear. */
export type CheckpointMetaInput = Readonly<Record<string, unknown>>;

export interface CheckpointEntry {
  name: string;
  meta: JsonObject;
  /** When the checkpoint was committed (the writer's clock). */
  createdAt: Date;
}

export interface CheckpointStore {
  /** Copies or uploads every file under `localDir`, then commits: until the commit the checkpoint
   * is invisible, and an interrupted put leaves every other checkpoint untouched. Putting an
   * existing name replaces it. */
  put(name: string, localDir: string, meta?: CheckpointMetaInput): Promise<CheckpointEntry>;
  /** Writes the checkpoint's files into `localDir` (which must be missing or empty), verifying
   * each file's size and sha256; `localDir` appears only once every file checked out. */
  get(name: string, localDir: string): Promise<CheckpointEntry>;
  /** Committed checkpoints only, oldest first. */
  list(): Promise<CheckpointEntry[]>;
  /** Removes a checkpoint; a missing name is not an error (pruning can be retried). */
  delete(name: string): Promise<void>;
  /** Where the checkpoints live, for logs and notebook output: never contains credentials. */
  describe(): string;
}

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Names become directory names and key segments: no slashes, and no leading dot (dot names are
 * the stores' own temporary entries). */
export function checkName(name: string, where: string): string {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new CheckpointError(
      `${where}: checkpoint name ${JSON.stringify(name)} must be 1–128 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  return name;
}
