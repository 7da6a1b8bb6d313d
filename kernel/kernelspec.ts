/** `thinkcells kernel install`: registers the `thinkcells` kernelspec (Deno's Jupyter kernel
 * started by kernel/launch.sh, which provides the project's import map). */
import { chmod, mkdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "../cells-lib/util/atomic.ts";

export const KERNEL_NAME = "thinkcells";
const projectRoot = fileURLToPath(new URL("..", import.meta.url));
export const launcher = path.join(projectRoot, "kernel/launch.sh");

export interface KernelSpec {
  argv: string[];
  display_name: string;
  language: string;
  metadata: Record<string, unknown>;
}

export function kernelSpec(name = KERNEL_NAME): KernelSpec {
  return {
    argv: [launcher, "{connection_file}"],
    display_name: name === KERNEL_NAME ? "TypeScript (thinkcells)" : `TypeScript (${name})`,
    language: "typescript",
    metadata: { thinkcells: { project: projectRoot } },
  };
}

/** Jupyter's per-user data directory, as jupyter_core computes it (JUPYTER_DATA_DIR first). */
export function userDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.JUPYTER_DATA_DIR) return env.JUPYTER_DATA_DIR;
  if (process.platform === "darwin") return path.join(os.homedir(), "Library/Jupyter");
  if (process.platform === "win32") return path.join(env.APPDATA ?? os.homedir(), "jupyter");
  return path.join(env.XDG_DATA_HOME || path.join(os.homedir(), ".local/share"), "jupyter");
}

export interface InstallOptions {
  name?: string;
  /** Install under PREFIX/share/jupyter (a virtualenv or conda prefix) instead of the user's dir. */
  prefix?: string;
  /** A Jupyter data directory to install into directly (the runner uses a private one). */
  dataDir?: string;
}

export interface InstallResult {
  dir: string;
  /** false when an identical kernelspec was already there. */
  changed: boolean;
}

/** Idempotent: rewrites kernel.json only when it differs, so set-up can run it every time. */
export async function installKernel(options: InstallOptions = {}): Promise<InstallResult> {
  const name = options.name ?? KERNEL_NAME;
  if (!/^[a-zA-Z0-9._-]+$/.test(name)) {
    throw new Error(
      `kernel install: name "${name}" may only contain letters, digits, ".", "_" and "-" (Jupyter's rule)`,
    );
  }
  const dataDir = options.dataDir ?? (options.prefix ? path.join(options.prefix, "share/jupyter") : userDataDir());
  const dir = path.join(dataDir, "kernels", name);
  const text = `${JSON.stringify(kernelSpec(name), null, 2)}\n`;
  const file = path.join(dir, "kernel.json");
  const old = await readFile(file, "utf8").catch(() => undefined);
  // git and npm keep the execute bit, but a copied checkout may not.
  await chmod(launcher, 0o755);
  if (old === text) return { dir, changed: false };
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(file, text);
  return { dir, changed: true };
}

export async function uninstallKernel(options: InstallOptions = {}): Promise<string> {
  const name = options.name ?? KERNEL_NAME;
  const dataDir = options.dataDir ?? (options.prefix ? path.join(options.prefix, "share/jupyter") : userDataDir());
  const dir = path.join(dataDir, "kernels", name);
  await rm(dir, { recursive: true, force: true });
  return dir;
}
