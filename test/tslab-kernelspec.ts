/** The tslab kernel for a test file: the library's build (dist/, what tslab imports), and tslab's
 * own installer's kernelspec in a private prefix that jupyter-server finds through JUPYTER_PATH. */
import { execFileSync } from "node:child_process";
import { mkdirSync, symlinkSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { afterAll, beforeAll } from "vitest";
import { venvProgram } from "../cells-lib/util/project-python.ts";
import { repoRoot, tempDir } from "./helpers.ts";

/** Registers the tslab kernelspec for the calling test file's tests (beforeAll/afterAll). */
export function useTslabKernel(): void {
  const jupyterPath = process.env.JUPYTER_PATH;
  beforeAll(() => {
    // What `npm test` and `npm run demo` do first (set-up): dist/, rebuilt when a source is newer.
    execFileSync("bash", [path.join(repoRoot, "scripts/build.sh")], { stdio: "inherit" });
    const prefix = tempDir("tslab-kernelspec");
    execFileSync(
      path.join(repoRoot, "node_modules/.bin/tslab"),
      [
        "install",
        `--python=${venvProgram("python")}`,
        `--binary=${path.join(repoRoot, "node_modules/.bin/tslab")}`,
        `--prefix=${prefix}`,
      ],
      { stdio: "ignore" },
    );
    process.env.JUPYTER_PATH = [path.join(prefix, "share/jupyter"), jupyterPath].filter(Boolean).join(path.delimiter);
  });
  afterAll(() => {
    if (jupyterPath === undefined) delete process.env.JUPYTER_PATH;
    else process.env.JUPYTER_PATH = jupyterPath;
  });
}

/** A directory outside the checkout whose notebooks import `thinkcells` under tslab: its
 * node_modules/thinkcells links to the checkout, as `npm install <this checkout>` would. */
export function tslabProjectDir(name: string): string {
  const dir = tempDir(name);
  mkdirSync(path.join(dir, "node_modules"));
  symlinkSync(repoRoot, path.join(dir, "node_modules/thinkcells"));
  return dir;
}
