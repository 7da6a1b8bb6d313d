/** The files of the folder to push, listed here rather than by @huggingface/hub (which takes a
 * folder URL too): progress needs the sizes up front, and a missing or empty folder deserves an
 * error before any request. */
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { HubError } from "./errors.ts";

export interface LocalFile {
  /** "/"-separated path inside the folder: the file's path in the repo. */
  path: string;
  absolute: string;
  size: number;
}

/** Every regular file under `dir` (symlinks followed), sorted; `.git` folders are left out
 * because the Hub refuses paths inside them. */
export async function listFolder(dir: string): Promise<LocalFile[]> {
  const root = path.resolve(dir);
  const top = await stat(root).catch(() => undefined);
  if (!top) throw new HubError(`pushToHub: folder ${dir} does not exist`);
  if (!top.isDirectory()) throw new HubError(`pushToHub: ${dir} is not a folder`);
  const files: LocalFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const relPath = rel ? `${rel}/${name}` : name;
      const absolute = path.join(root, relPath);
      const s = await stat(absolute);
      if (s.isDirectory()) {
        if (name !== ".git") await walk(relPath);
      } else if (s.isFile()) {
        files.push({ path: relPath, absolute, size: s.size });
      } else {
        throw new HubError(`pushToHub: ${absolute} is neither a file nor a folder`);
      }
    }
  };
  await walk("");
  if (files.length === 0) throw new HubError(`pushToHub: folder ${dir} has no files to push`);
  return files;
}
