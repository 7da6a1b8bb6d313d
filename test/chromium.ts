/** Headless Chromium for tests: load a page, let its scripts run, return the DOM as HTML. */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { pathToFileURL } from "node:url";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export interface DumpDomOptions {
  /** Virtual time the page gets for its scripts and timers; --dump-dom waits for it. */
  virtualTimeMs?: number;
  /** Wall-clock limit for the whole browser run. */
  timeoutMs?: number;
}

/** The serialized DOM of `file` after its scripts ran. */
export async function dumpDom(file: string, options: DumpDomOptions = {}): Promise<string> {
  const { virtualTimeMs = 10_000, timeoutMs = 60_000 } = options;
  // A fresh profile per run: no state leaks between tests, and none is left behind.
  const profile = await mkdtemp(path.join(os.tmpdir(), "thinkcells-chromium-"));
  const args = [
    "--headless",
    // Chromium refuses to start as root (as in containers) with its sandbox on.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    // Offline, like the tests: a chart's fallback to the CDN fails here even on a connected machine.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--disable-dev-shm-usage",
    "--no-first-run",
    `--user-data-dir=${profile}`,
    `--virtual-time-budget=${virtualTimeMs}`,
    "--dump-dom",
    pathToFileURL(file).href,
  ];
  try {
    return await run(CHROMIUM, args, timeoutMs);
  } finally {
    // Helper processes may still be closing files in the profile for a moment.
    await rm(profile, { recursive: true, force: true, maxRetries: 5 });
  }
}

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout ends the renderer and GPU helpers too.
    const child = spawn(command, args, { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => (err = (err + chunk.toString()).slice(-4000)));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // Already gone.
      }
      reject(new Error(`${command} did not finish within ${timeoutMs} ms\n${err}`));
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${command} (set CHROMIUM to its path): ${error.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString("utf8"));
      else reject(new Error(`${command} exited with ${signal ?? `code ${code}`}\n${err}`));
    });
  });
}
