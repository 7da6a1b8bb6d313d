/** The client's runtime directory and the files in it (issue 13: S1, S2, S4), and reaching a
 * worker that was killed a moment ago (C4). */
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { afterAll, describe, expect, it } from "vitest";
import { BridgeClient, type BridgeOptions, bridgeDir } from "../../cells-lib/bridge/client.ts";
import { BridgeError } from "../../cells-lib/bridge/errors.ts";
import { PROTOCOL_VERSION } from "../../cells-lib/bridge/protocol.ts";
import { repoRoot, tempDir } from "../helpers.ts";

const OTHER_USER = "thinkcells-other";
const euid = process.geteuid!();

/** A second, unprivileged user's uid (made if missing), or why there cannot be one here. */
function otherUser(): number | string {
  if (euid !== 0) return `needs root to create and act as a second user (${OTHER_USER})`;
  const uid = () => Number(execFileSync("id", ["-u", OTHER_USER], { encoding: "utf8" }));
  try {
    return uid();
  } catch {
    // Another test run may create it at the same moment: only the lookup after decides.
    try {
      execFileSync("useradd", ["--system", "--no-create-home", OTHER_USER], { stdio: "ignore" });
    } catch {}
    return uid();
  }
}
const other = otherUser();

/** Runs `command` as the second user. */
const asOther = (...command: string[]) => execFileSync("runuser", ["-u", OTHER_USER, "--", ...command]);

const started: BridgeClient[] = [];
afterAll(async () => {
  for (const client of started) await client.shutdown().catch(() => {});
});

/** The refusal `connect` gives; a client it returned instead (as before the fixes) is shut down
 * after the test. */
async function refusal(options: BridgeOptions): Promise<BridgeError> {
  const result = await BridgeClient.connect({ idleTimeoutS: 30, ...options }).catch((err: unknown) => err);
  if (result instanceof BridgeClient) started.push(result);
  expect(result).toBeInstanceOf(BridgeError);
  return result as BridgeError;
}

/** Sets environment variables (undefined: unset) for the length of `body`. */
async function withEnv<T>(vars: Record<string, string | undefined>, body: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(vars);
  try {
    return await body();
  } finally {
    set(saved);
  }
}

describe("S1: the runtime directory", () => {
  it.skipIf(typeof other === "string")(
    "S1: refuses the default directory when another user made it first",
    async () => {
      // A directory like /tmp: everyone may create entries in it.
      const shared = mkdtempSync(path.join("/tmp", "thinkcells-corpus-"));
      chmodSync(shared, 0o1777);
      const planted = path.join(shared, `thinkcells-${euid}`);
      asOther("mkdir", "-m", "0777", planted);
      try {
        const err = await withEnv(
          { TMPDIR: shared, XDG_RUNTIME_DIR: undefined, THINKCELLS_BRIDGE_DIR: undefined },
          () => refusal({ session: "s1" }),
        );
        expect(err.kind).toBe("start_failed");
        expect(err.message).toContain(
          `refusing the bridge directory ${planted}: it belongs to uid ${other}, not to this user (uid ${euid})`,
        );
        expect(readdirSync(planted)).toEqual([]);
        expect(statSync(planted).mode & 0o7777).toBe(0o777); // not taken over with chmod either
      } finally {
        rmSync(shared, { recursive: true, force: true });
      }
    },
  );

  it("S1: refuses a directory of this user that others can write to", async () => {
    const loose = path.join(tempDir("corpus-s1"), "run");
    mkdirSync(loose);
    chmodSync(loose, 0o777);
    const err = await refusal({ session: "s1", dir: loose });
    expect(err.message).toContain(`refusing the bridge directory ${loose}: others can write to it (mode 0777)`);
    expect(readdirSync(loose)).toEqual([]);
  });

  it("S1: refuses a directory that is a symbolic link", async () => {
    const base = tempDir("corpus-s1");
    mkdirSync(path.join(base, "real"), { mode: 0o700 });
    symlinkSync(path.join(base, "real"), path.join(base, "link"));
    const err = await refusal({ session: "s1", dir: path.join(base, "link") });
    expect(err.message).toContain(`refusing the bridge directory ${path.join(base, "link")}: it is a symbolic link`);
    expect(readdirSync(path.join(base, "real"))).toEqual([]);
  });

  it("S1: prefers $XDG_RUNTIME_DIR (absolute, as its specification asks) to the temp directory", () => {
    expect(bridgeDir(undefined, { XDG_RUNTIME_DIR: "/run/user/1000" })).toBe("/run/user/1000/thinkcells");
    expect(bridgeDir(undefined, { XDG_RUNTIME_DIR: "relative" })).toBe(path.join(os.tmpdir(), `thinkcells-${euid}`));
    expect(bridgeDir(undefined, {})).toBe(path.join(os.tmpdir(), `thinkcells-${euid}`));
    expect(bridgeDir(undefined, { XDG_RUNTIME_DIR: "/run/user/1000", THINKCELLS_BRIDGE_DIR: "/srv/b" })).toBe("/srv/b");
  });
});

describe("S2: files in the runtime directory", () => {
  // A session naming a live pid (this one) and a socket nobody listens on.
  const plantedSession = (dir: string) =>
    JSON.stringify({
      pid: process.pid,
      socket: path.join(dir, "nobody.sock"),
      token: "t",
      protocol_version: PROTOCOL_VERSION,
    });

  it("S2: does not create a file through a planted log symlink", async () => {
    const dir = tempDir("corpus-s2");
    const target = path.join(tempDir("corpus-s2-target"), "made-by-the-client");
    symlinkSync(target, path.join(dir, "s2.log"));
    const err = await refusal({ session: "s2", dir });
    expect(err.message).toContain(`refusing ${path.join(dir, "s2.log")}: it is a symbolic link`);
    expect(existsSync(target)).toBe(false);
  });

  it("S2: does not read the session through a planted symlink", async () => {
    const dir = tempDir("corpus-s2");
    const elsewhere = path.join(tempDir("corpus-s2-elsewhere"), "session.json");
    writeFileSync(elsewhere, plantedSession(dir));
    symlinkSync(elsewhere, path.join(dir, "s2.json"));
    const err = await refusal({ session: "s2", dir });
    expect(err.message).toContain(`refusing ${path.join(dir, "s2.json")}: it is a symbolic link`);
  });

  it.skipIf(typeof other === "string")("S2: does not read a session file of another user", async () => {
    const dir = tempDir("corpus-s2");
    const file = path.join(dir, "s2.json");
    writeFileSync(file, plantedSession(dir));
    execFileSync("chown", [OTHER_USER, file]);
    const err = await refusal({ session: "s2", dir });
    expect(err.message).toContain(`refusing ${file}: it belongs to uid ${other}`);
  });
});

describe("S4: relative directories", () => {
  it("S4: resolves a relative THINKCELLS_BRIDGE_DIR, dir option or TMPDIR against the caller's directory", async () => {
    expect(bridgeDir(undefined, { THINKCELLS_BRIDGE_DIR: "run/bridge" })).toBe(path.resolve("run/bridge"));
    expect(bridgeDir("run/bridge", {})).toBe(path.resolve("run/bridge"));
    // How gpu-bridge/0.7/thinkcells-0/ came to be committed.
    const fromTmpdir = await withEnv({ TMPDIR: "0.7" }, async () => bridgeDir(undefined, {}));
    expect(fromTmpdir).toBe(path.resolve("0.7", `thinkcells-${euid}`));
  });

  it("S4: a client started elsewhere with a relative THINKCELLS_BRIDGE_DIR reaches its worker there", () => {
    const cwd = tempDir("corpus-s4");
    const script = `import { BridgeClient } from ${JSON.stringify(path.join(repoRoot, "cells-lib/bridge/client.ts"))};
      const c = await BridgeClient.connect({ session: "s4", startTimeoutMs: 20000 });
      await c.shutdown();`;
    execFileSync(path.join(repoRoot, "node_modules/.bin/tsx"), ["--input-type=module", "-e", script], {
      cwd,
      env: { ...process.env, THINKCELLS_BRIDGE_DIR: "rel" },
      stdio: "pipe",
      timeout: 60_000,
    });
    expect(readdirSync(path.join(cwd, "rel")).sort()).toEqual(["s4.lock", "s4.log"]);
    expect(existsSync(path.join(repoRoot, "gpu-bridge/rel"))).toBe(false);
  });

  it("S4: git tracks no worker runtime file", () => {
    // Anything in a thinkcells-<uid> directory, a socket or session temp file by its name, and a
    // session file (its token) wherever it is.
    const git = (...args: string[]) =>
      spawnSync("git", args, { cwd: repoRoot, encoding: "utf8" }).stdout.split("\0").filter(Boolean);
    const byName = git("ls-files", "-z").filter((f) => /(^|\/)thinkcells-\d+\/|\.sock$|\.json\.tmp-/.test(f));
    const sessions = git("grep", "-lz", "--all-match", "-e", '"token"', "-e", '"socket"', "--", "*.json");
    expect([...byName, ...sessions]).toEqual([]);
  });
});

describe("C4: a worker killed a moment ago", () => {
  it("C4: a connect 0-20 ms after the worker was killed starts a fresh worker", async () => {
    const options = { session: "c4", dir: tempDir("corpus-c4"), idleTimeoutS: 30 };
    let pid = (await BridgeClient.connect(options)).hello.pid;
    for (const delayMs of [0, 10, 20]) {
      process.kill(pid, "SIGKILL");
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const fresh = await BridgeClient.connect(options);
      started.push(fresh);
      expect(fresh.hello.pid).not.toBe(pid);
      await expect(fresh.call("ping", {})).resolves.toEqual({});
      pid = fresh.hello.pid;
    }
  });
});
