/** The commit record every store writes last: the checkpoint's metadata plus each file's size
 * and sha256, so a reader can tell a committed checkpoint from a half-written one and verify
 * what it downloads. */
import { z } from "zod";
import { formatIssues, issuesFrom } from "../util/options.ts";
import { type CheckpointEntry, CheckpointError, type CheckpointMetaInput, type JsonObject } from "./store.ts";

export interface FileDigest {
  /** Relative, "/"-separated. */
  path: string;
  size: number;
  sha256: string;
}

export interface CommitRecord {
  format: 1;
  createdAt: string;
  meta: JsonObject;
  files: FileDigest[];
}

/** Records come from disk or a bucket, so their paths must not climb out of the target directory. */
export function isSafeRelativePath(p: string): boolean {
  return (
    p.length > 0 &&
    !p.includes("\\") &&
    !p.includes("\0") &&
    p.split("/").every((part) => part !== "" && part !== "." && part !== "..")
  );
}

const RecordSchema = z.object({
  format: z.literal(1),
  createdAt: z.iso.datetime(),
  meta: z.record(z.string(), z.json()),
  files: z.array(
    z.object({
      path: z.string().refine(isSafeRelativePath, "unsafe path"),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});

export function makeRecord(meta: JsonObject, files: FileDigest[]): CommitRecord {
  return { format: 1, createdAt: new Date().toISOString(), meta, files };
}

export function serializeRecord(record: CommitRecord): string {
  return `${JSON.stringify(record, null, 1)}\n`;
}

export function parseRecord(text: string, source: string): CommitRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CheckpointError(`${source} is not valid JSON: the commit record is corrupt`);
  }
  const parsed = RecordSchema.safeParse(value);
  if (!parsed.success)
    throw new CheckpointError(
      `${source} is not a checkpoint commit record: ${formatIssues(issuesFrom(parsed.error, value), "field")}`,
    );
  return parsed.data as CommitRecord;
}

export function entryOf(name: string, record: CommitRecord): CheckpointEntry {
  return { name, meta: record.meta, createdAt: new Date(record.createdAt) };
}

/** Oldest first; the name breaks ties so listings are stable. */
export function sortEntries(entries: CheckpointEntry[]): CheckpointEntry[] {
  return entries.sort(
    (a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

/** Round-trips through JSON so what is stored is exactly what list() will return; called before
 * any file is copied so bad metadata fails fast. */
export function toJsonObject(meta: CheckpointMetaInput, where: string): JsonObject {
  let json: unknown;
  try {
    json = JSON.parse(JSON.stringify(meta ?? {}));
  } catch (err) {
    throw new CheckpointError(`${where}: meta must be JSON-serialisable (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new CheckpointError(`${where}: meta must be a JSON object`);
  return json as JsonObject;
}
