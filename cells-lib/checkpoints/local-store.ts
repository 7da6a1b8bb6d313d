/** Checkpoints as directories: `<root>/<name>/` holds the checkpoint's files plus
 * `.checkpoint.json`, its commit record.
 *
 * A put copies into `<root>/.tmp-<name>-<pid>-<rand>`, fsyncs every file, writes the record last,
 * then renames the directory to `<root>/<name>`: the rename is the commit. A crash leaves only a
 * dot-directory, which list() ignores and the next put removes once its writer (the pid in its
 * name) has exited: another process's put still running is left alone.
 *
 * Renames only ever target fresh names. Replacing an existing checkpoint first moves it aside to
 * `<root>/.old-<name>-…`, commits, then deletes it; Linux cannot rename over a non-empty
 * directory, and Colab's Drive mount cannot always rename over an existing one either. A crash
 * between those two renames leaves that one name missing, never a half-written checkpoint. */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { removeStaleStaging, stagingSuffix } from "../util/atomic.ts";
import { parseOptions } from "../util/options.ts";
import { fsyncDir, intoFreshDir, listFiles, readChunks, writeHashed } from "./files.ts";
import {
  type CommitRecord,
  entryOf,
  type FileDigest,
  makeRecord,
  parseRecord,
  serializeRecord,
  sortEntries,
  toJsonObject,
} from "./record.ts";
import { type CheckpointEntry, CheckpointError, type CheckpointStore, checkName } from "./store.ts";

const RECORD = ".checkpoint.json";
/** `.tmp-<name>-<pid>-<rand>` and `.old-<name>-<pid>-<rand>`; the group is the writer's pid. */
const STAGING = /^\.(?:tmp|old)-.+-(\d+)-[0-9a-f]+$/;

const Root = z.string().min(1, "expected the checkpoint folder's path");

/** Checkpoints in a directory on this machine's disk (created if missing). */
export function localStore(root: string): CheckpointStore {
  return fileStore(path.resolve(parseOptions(Root, root, "localStore")), false);
}

/** Checkpoints in a folder of a mounted Google Drive (Colab: `/content/drive/MyDrive/...`).
 * Plain files, written as by `localStore`, except that it never creates the folders above its
 * own: if Drive is not mounted it fails instead of filling the VM's disk. Drive uploads in the
 * background, so run `drive.flush_and_unmount()` before the VM goes away; deleted (pruned)
 * checkpoints go to Drive's trash and count against the quota until it is emptied. */
export function driveStore(folder: string): CheckpointStore {
  const root = path.resolve(parseOptions(Root, folder, "driveStore"));
  if (!existsSync(path.dirname(root))) throw new CheckpointError(`driveStore: ${notMounted(root)}`);
  return fileStore(root, true);
}

function notMounted(root: string): string {
  return `${path.dirname(root)} does not exist. Is Google Drive mounted (in Colab: from google.colab import drive; drive.mount("/content/drive"))?`;
}

function fileStore(root: string, drive: boolean): CheckpointStore {
  const label = drive ? `Google Drive folder ${root}` : `local directory ${root}`;

  async function ensureRoot(where: string): Promise<void> {
    if (!drive) return void (await mkdir(root, { recursive: true }));
    await mkdir(root).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") throw new CheckpointError(`${where}: ${notMounted(root)}`);
      if (err.code !== "EEXIST") throw err;
    });
  }

  async function readRecord(name: string): Promise<CommitRecord | undefined> {
    const file = path.join(root, name, RECORD);
    const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
      throw err;
    });
    return text === undefined ? undefined : parseRecord(text, file);
  }

  /** Moves `name` aside under a fresh dot-name (so it stops being listed); returns that path. */
  async function moveAside(name: string): Promise<string | undefined> {
    const aside = `.old-${name}-${stagingSuffix()}`;
    try {
      await rename(path.join(root, name), path.join(root, aside));
      return path.join(root, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  async function copyIn(localDir: string, files: string[], tmp: string): Promise<FileDigest[]> {
    const digests: FileDigest[] = [];
    for (const rel of files)
      digests.push({ path: rel, ...(await writeHashed(readChunks(path.join(localDir, rel)), path.join(tmp, rel))) });
    return digests;
  }

  async function commit(name: string, tmp: string): Promise<void> {
    const final = path.join(root, name);
    const old = await moveAside(name);
    try {
      await rename(tmp, final);
    } catch (err) {
      if (old) await rename(old, final).catch(() => {});
      throw err;
    }
    await fsyncDir(root);
    if (old) await rm(old, { recursive: true, force: true });
  }

  return {
    describe: () => label,

    async put(name, localDir, meta = {}) {
      const where = `put "${name}" into ${label}`;
      checkName(name, where);
      const json = toJsonObject(meta, where);
      const files = await listFiles(localDir, where);
      if (files.includes(RECORD))
        throw new CheckpointError(`${where}: ${RECORD} is reserved for the store's commit record`);
      await ensureRoot(where);
      await removeStaleStaging(root, [STAGING]);
      const tmp = path.join(root, `.tmp-${name}-${stagingSuffix()}`);
      try {
        await mkdir(tmp);
        const record = makeRecord(json, await copyIn(localDir, files, tmp));
        await writeHashed([Buffer.from(serializeRecord(record))], path.join(tmp, RECORD));
        for (const dir of new Set(files.map((f) => path.dirname(path.join(tmp, f))))) await fsyncDir(dir);
        await fsyncDir(tmp);
        await commit(name, tmp);
        return entryOf(name, record);
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        throw err;
      }
    },

    async get(name, localDir) {
      const where = `get "${name}" from ${label}`;
      checkName(name, where);
      const record = await readRecord(name);
      if (!record) throw new CheckpointError(`${where}: no such checkpoint`);
      await intoFreshDir(localDir, where, async (dir) => {
        for (const f of record.files)
          await writeHashed(readChunks(path.join(root, name, f.path)), path.join(dir, f.path), f);
      });
      return entryOf(name, record);
    },

    async list() {
      const names = await readdir(root).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return [];
        throw err;
      });
      const entries: CheckpointEntry[] = [];
      for (const name of names) {
        if (name.startsWith(".")) continue;
        const record = await readRecord(name);
        if (record) entries.push(entryOf(name, record));
      }
      return sortEntries(entries);
    },

    async delete(name) {
      checkName(name, `delete "${name}" from ${label}`);
      const aside = await moveAside(name);
      if (aside) await rm(aside, { recursive: true, force: true });
    },
  };
}
