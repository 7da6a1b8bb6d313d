/** Files written so that a crash never leaves a half-written one: temp name, then rename.
 *
 * Staging (those temporary files and directories) carries its writer's pid in its name, so what
 * a killed process left behind can be told from a live process's work: the next write removes
 * the first and never touches the second. */
import { randomBytes } from "node:crypto";
import { lstat, mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import process from "node:process";

/** `<pid>-<random>`: unique to this process and call, for temporary sibling names. */
export function stagingSuffix(): string {
  return `${process.pid}-${randomBytes(4).toString("hex")}`;
}

/** Whether a process with this id exists (another user's answers EPERM: it exists). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Removes the entries of `dir` that a pattern matches (its first group: the writer's pid) and
 * whose writer has exited. Only this user's: another user's staging is theirs to clean, and on a
 * shared mount their pids are not ours to judge. Best effort: a leftover that cannot be removed
 * must not fail the write that found it. */
export async function removeStaleStaging(dir: string, patterns: readonly RegExp[]): Promise<void> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return [];
    throw err;
  });
  for (const name of names) {
    const pid = patterns.map((p) => p.exec(name)?.[1]).find((m) => m !== undefined);
    if (pid === undefined || processAlive(Number(pid))) continue;
    const entry = path.join(dir, name);
    const owner = (await lstat(entry).catch(() => undefined))?.uid;
    if (owner !== undefined && owner === process.getuid?.())
      await rm(entry, { recursive: true, force: true }).catch(() => {});
  }
}

/** A fresh directory `parent/<prefix>-<pid>-XXXXXX`, after removing those of exited processes. */
export async function stagingDir(parent: string, prefix: string): Promise<string> {
  await removeStaleStaging(parent, [new RegExp(`^${escapeRegExp(prefix)}-(\\d+)-[A-Za-z0-9]{6}$`)]);
  return mkdtemp(path.join(parent, `${prefix}-${process.pid}-`));
}

/** An error of a write or fsync names only the syscall ("ENOSPC: no space left on device,
 * write"); this prefixes the file it was writing, keeping the error's code. */
export function withPath(err: unknown, file: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof Error && e.code && e.path === undefined) {
    e.message = `${file}: ${e.message}`;
    e.path = file;
  }
  return err;
}

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await removeStaleStaging(path.dirname(file), [
    new RegExp(`^${escapeRegExp(path.basename(file))}\\.tmp-(\\d+)-[0-9a-f]+$`),
  ]);
  const tmp = `${file}.tmp-${stagingSuffix()}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw withPath(err, tmp);
  }
}
