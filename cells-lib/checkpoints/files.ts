/** Local file plumbing shared by the stores: listing a directory tree, durable hashed writes, and
 * filling a destination directory all-or-nothing. */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import path from "node:path";
import { escapeRegExp, removeStaleStaging, stagingSuffix, withPath } from "../util/atomic.ts";
import type { FileDigest } from "./record.ts";
import { CheckpointError } from "./store.ts";

/** Every regular file under `dir` (symlinks followed), as sorted "/"-separated relative paths.
 * Empty directories are not part of a checkpoint: object stores cannot hold them. */
export async function listFiles(dir: string, where: string): Promise<string[]> {
  const top = await stat(dir).catch(() => undefined);
  if (!top?.isDirectory()) throw new CheckpointError(`${where}: ${dir} is not a directory`);
  const files: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(dir, rel))).sort()) {
      const relPath = rel ? `${rel}/${name}` : name;
      const s = await stat(path.join(dir, relPath));
      if (s.isDirectory()) await walk(relPath);
      else if (s.isFile()) files.push(relPath);
      else throw new CheckpointError(`${where}: ${path.join(dir, relPath)} is neither a file nor a directory`);
    }
  };
  await walk("");
  if (files.length === 0) throw new CheckpointError(`${where}: ${dir} has no files to checkpoint`);
  return files;
}

/** A file's bytes in 1 MiB chunks (fewer syscalls than the 64 KiB default on multi-GB weights). */
export function readChunks(file: string): AsyncIterable<Uint8Array> {
  return createReadStream(file, { highWaterMark: 1024 * 1024 });
}

/** Writes the chunks to a new file, fsyncs it, and returns its size and sha256. With `expected`,
 * a mismatch is an error (the caller discards the partial directory). */
export async function writeHashed(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  file: string,
  expected?: FileDigest,
): Promise<Omit<FileDigest, "path">> {
  await mkdir(path.dirname(file), { recursive: true });
  const hash = createHash("sha256");
  let size = 0;
  const fh = await open(file, "wx");
  try {
    for await (const chunk of chunks) {
      hash.update(chunk);
      size += chunk.byteLength;
      for (let offset = 0; offset < chunk.byteLength; ) offset += (await fh.write(chunk, offset)).bytesWritten;
    }
    await fh.sync();
  } catch (err) {
    throw withPath(err, file);
  } finally {
    await fh.close();
  }
  const digest = { size, sha256: hash.digest("hex") };
  if (expected && (digest.size !== expected.size || digest.sha256 !== expected.sha256)) {
    throw new CheckpointError(
      `${expected.path}: expected ${expected.size} bytes with sha256 ${expected.sha256}, ` +
        `got ${digest.size} bytes with sha256 ${digest.sha256}; the stored checkpoint is damaged`,
    );
  }
  return digest;
}

/** Makes a directory's entries (a rename, a new file) durable. Some filesystems, FUSE mounts among
 * them, cannot fsync directories; there the rename is as durable as the mount makes it. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } catch (err) {
    if (!["EINVAL", "ENOTSUP", "EISDIR", "EPERM", "EBADF"].includes((err as NodeJS.ErrnoException).code ?? ""))
      throw err;
  } finally {
    await fh.close();
  }
}

/** Fills `target` all-or-nothing: `fill` writes into a temporary sibling that is renamed to
 * `target` only if it succeeds. `target` must be missing or empty, so nothing is overwritten.
 * Siblings that killed processes left for the same target are removed first. */
export async function intoFreshDir(target: string, where: string, fill: (dir: string) => Promise<void>): Promise<void> {
  const existing = await readdir(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (existing && existing.length > 0)
    throw new CheckpointError(`${where}: ${target} is not empty; restore into a new or empty directory`);
  const parent = path.dirname(path.resolve(target));
  await mkdir(parent, { recursive: true });
  const base = path.basename(target);
  await removeStaleStaging(parent, [new RegExp(`^\\.${escapeRegExp(base)}\\.tmp-(\\d+)-[0-9a-f]+$`)]);
  const tmp = path.join(parent, `.${base}.tmp-${stagingSuffix()}`);
  await mkdir(tmp);
  try {
    await fill(tmp);
    if (existing) await rmdir(target);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
