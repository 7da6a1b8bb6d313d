/** A private jupyter-server for one headless run: 127.0.0.1, a random free port, a random token
 * passed through the environment (not argv, which other users can read), and its own data
 * directory holding the thinkcells kernelspec, so a run never depends on what is installed.
 * The kernel launcher's warnings (kernel/launch.sh, on the server's stderr) reach the caller. */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { stagingDir } from "../cells-lib/util/atomic.ts";
import { venvProgram } from "../cells-lib/util/project-python.ts";
import { installKernel } from "./kernelspec.ts";

/** How kernel/launch.sh starts its warnings (a notebook's deno.json it ignores). */
const LAUNCHER_WARNING = "thinkcells kernel: ";

export interface JupyterServer {
  baseUrl: string;
  token: string;
  stop(): Promise<void>;
}

/** A port nothing listens on now (the kernel's OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once("exit", () => r()));
}

/** A Jupyter server's arguments: loopback only, on `port`, no browser, serving `rootDir`. */
export function serverArgs(port: number, rootDir: string): string[] {
  const args = [
    "--ip=127.0.0.1",
    `--port=${port}`,
    "--port-retries=0",
    "--no-browser",
    `--ServerApp.root_dir=${rootDir}`,
  ];
  if (process.getuid?.() === 0) args.push("--allow-root");
  return args;
}

/** Starts jupyter-server with `rootDir` as its root (kernels start in the notebook's directory);
 * `log` gets the kernel launcher's warnings. */
export async function startJupyterServer(
  rootDir: string,
  { startTimeoutS = 60, log: warn = (_line: string) => {} } = {},
): Promise<JupyterServer> {
  // Named with our pid: the next run removes what a killed one left.
  const home = await stagingDir(os.tmpdir(), "thinkcells-jupyter");
  await installKernel({ dataDir: path.join(home, "data") });
  const token = randomBytes(24).toString("hex");
  const port = await freePort();
  const args = serverArgs(port, rootDir);
  const log: string[] = [];
  const child = spawn(venvProgram("jupyter-server"), args, {
    env: {
      ...process.env,
      JUPYTER_TOKEN: token,
      // Saved outputs are read as text (and in the HTML report): no ANSI colours.
      NO_COLOR: "1",
      // Our kernelspec first; the user's and the system's kernels stay visible for --kernel.
      JUPYTER_PATH: [path.join(home, "data"), process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter),
      JUPYTER_RUNTIME_DIR: path.join(home, "runtime"),
      JUPYTER_CONFIG_DIR: path.join(home, "config"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const keep = (chunk: Buffer) => log.push(chunk.toString()) > 200 && log.shift();
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  createInterface({ input: child.stderr! }).on("line", (line) => line.startsWith(LAUNCHER_WARNING) && warn(line));
  let spawnError: Error | undefined;
  child.once("error", (err) => (spawnError = err));

  const baseUrl = `http://127.0.0.1:${port}/`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killed = await Promise.race([exited(child).then(() => true), sleep(5000).then(() => false)]);
      if (!killed) child.kill("SIGKILL");
      await exited(child);
    }
    await rm(home, { recursive: true, force: true });
  };

  const deadline = Date.now() + startTimeoutS * 1000;
  while (Date.now() < deadline) {
    if (spawnError) {
      await stop();
      throw new Error(
        `cannot start jupyter-server (${spawnError.message}); run npm run setup, which installs it into the project's .venv`,
      );
    }
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`jupyter-server exited with code ${child.exitCode}:\n${log.join("").slice(-2000)}`);
    }
    try {
      const res = await fetch(`${baseUrl}api/status`, { headers: { Authorization: `token ${token}` } });
      if (res.ok) return { baseUrl, token, stop };
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  await stop();
  throw new Error(`jupyter-server did not answer within ${startTimeoutS} s:\n${log.join("").slice(-2000)}`);
}
