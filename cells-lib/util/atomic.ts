/** Files written so that a crash never leaves a half-written one: temp name, then rename. */
import { rename, writeFile } from "node:fs/promises";
import process from "node:process";

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}
