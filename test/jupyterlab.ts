/** A private JupyterLab for browser tests: 127.0.0.1, a free port, a random token (through the
 * environment, not argv), and its own Jupyter dirs (data with the thinkcells kernelspec, config,
 * runtime, settings, workspaces), so a test neither reads nor changes the user's Jupyter set-up. */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { projectVenv } from "../cells-lib/util/project-python.ts";
import { exited, freePort, serverArgs } from "../kernel/jupyter-server.ts";
import { installKernel } from "../kernel/kernelspec.ts";

export const jupyterLabProgram = path.join(projectVenv, "bin", "jupyter-lab");

export interface JupyterLab {
  /** http://127.0.0.1:PORT/ */
  baseUrl: string;
  token: string;
  /** The server's output so far (its log, the kernel launcher's warnings). */
  log(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Added to the server's environment (the kernels it starts inherit them). */
  env?: Record<string, string>;
  startTimeoutS?: number;
}

/** JupyterLab user settings by plugin id ("package:plugin"). */
const SETTINGS: Record<string, object> = {
  // Every cell stays in the DOM and laid out: the test reads outputs of cells outside the viewport.
  "@jupyterlab/notebook-extension:tracker": { windowingMode: "none" },
  // No "fetch Jupyter news?" toast over the notebook (the machine may be offline anyway).
  "@jupyterlab/apputils-extension:notification": { fetchNews: "false", checkForUpdates: false },
};

/** Starts JupyterLab serving `rootDir`; resolves once its API answers. */
export async function startJupyterLab(rootDir: string, options: StartOptions = {}): Promise<JupyterLab> {
  const { env = {}, startTimeoutS = 120 } = options;
  if (!existsSync(jupyterLabProgram)) {
    throw new Error(`${jupyterLabProgram} is missing: npm run setup installs JupyterLab (gpu-bridge/requirements.txt)`);
  }
  const home = await mkdtemp(path.join(os.tmpdir(), "thinkcells-jupyterlab-"));
  const dirs = {
    data: path.join(home, "data"),
    config: path.join(home, "config"),
    runtime: path.join(home, "runtime"),
    settings: path.join(home, "settings"),
    workspaces: path.join(home, "workspaces"),
  };
  await installKernel({ dataDir: dirs.data });
  for (const [plugin, values] of Object.entries(SETTINGS)) {
    // Stored as SETTINGS_DIR/package/plugin.jupyterlab-settings.
    const [pkg, name] = plugin.split(":") as [string, string];
    await mkdir(path.join(dirs.settings, pkg), { recursive: true });
    await writeFile(path.join(dirs.settings, pkg, `${name}.jupyterlab-settings`), JSON.stringify(values));
  }
  const token = randomBytes(24).toString("hex");
  const port = await freePort();
  const args = [
    ...serverArgs(port, rootDir),
    // Nothing fetched from the internet.
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
  ];
  const output: string[] = [];
  const child = spawn(jupyterLabProgram, args, {
    env: {
      ...process.env,
      ...env,
      JUPYTER_TOKEN: token,
      // The private data dir is also where the notary keeps its signatures (trusted notebooks).
      JUPYTER_DATA_DIR: dirs.data,
      JUPYTER_PATH: dirs.data,
      JUPYTER_CONFIG_DIR: dirs.config,
      JUPYTER_RUNTIME_DIR: dirs.runtime,
      JUPYTERLAB_SETTINGS_DIR: dirs.settings,
      JUPYTERLAB_WORKSPACES_DIR: dirs.workspaces,
    },
    // Not the project: its package.json ("type": "module") breaks the node script JupyterLab runs
    // to check its build.
    cwd: rootDir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const keep = (chunk: Buffer) => output.push(chunk.toString()) > 2000 && output.shift();
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let spawnError: Error | undefined;
  child.once("error", (err) => (spawnError = err));

  const baseUrl = `http://127.0.0.1:${port}/`;
  const log = () => output.join("");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      // SIGTERM asks JupyterLab to shut its kernels down before it exits.
      child.kill("SIGTERM");
      const done = await Promise.race([exited(child).then(() => true), sleep(10_000).then(() => false)]);
      if (!done) child.kill("SIGKILL");
      await exited(child);
    }
    await rm(home, { recursive: true, force: true, maxRetries: 5 });
  };

  const deadline = Date.now() + startTimeoutS * 1000;
  while (Date.now() < deadline) {
    if (spawnError || child.exitCode !== null) {
      await stop();
      throw new Error(
        `JupyterLab did not start: ${spawnError?.message ?? `exit code ${child.exitCode}`}\n${log().slice(-3000)}`,
      );
    }
    try {
      const res = await fetch(`${baseUrl}api/status`, { headers: { Authorization: `token ${token}` } });
      if (res.ok) return { baseUrl, token, log, stop };
    } catch {
      // Not listening yet.
    }
    await sleep(200);
  }
  await stop();
  throw new Error(`JupyterLab did not answer within ${startTimeoutS} s:\n${log().slice(-3000)}`);
}
