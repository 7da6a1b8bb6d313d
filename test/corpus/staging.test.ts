/** C3: staging left by a killed checkpoint save, restore or export is removed by the next one,
 * told apart from a live writer's by the pid in its name; a full disk's error names the file. */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it, type TestContext } from "vitest";
import { type CheckpointStore, driveStore, localStore } from "../../cells-lib/checkpoints/index.ts";
import { exportModel } from "../../cells-lib/export/export-model.ts";
import { writeFileAtomic } from "../../cells-lib/util/atomic.ts";
import { startJupyterServer } from "../../kernel/jupyter-server.ts";
import { repoRoot, tempDir } from "../helpers.ts";
import { fakeModel } from "./fake-export.ts";

/** The pid of a process that has exited (and been reaped). */
const deadPid = () => spawnSync("true").pid!;

/** Another process, alive until the tests end: its staging must survive. */
const sleeper: ChildProcess = spawn("sleep", ["600"], { stdio: "ignore" });
const livePid = sleeper.pid!;
afterAll(() => void sleeper.kill());

function leave(dir: string, name: string, file = "weights.safetensors"): string {
  mkdirSync(path.dirname(path.join(dir, name, file)), { recursive: true });
  writeFileSync(path.join(dir, name, file), "partial");
  return name;
}

function source(): string {
  const dir = tempDir("c3-src");
  writeFileSync(path.join(dir, "state.safetensors"), Buffer.alloc(200_000, 1));
  return dir;
}

/** A small tmpfs mounted at a fresh directory (root only); unmounted when the test ends. */
function fullDisk(ctx: TestContext): string {
  if (process.getuid?.() !== 0) ctx.skip("needs root to mount a small tmpfs");
  const dir = tempDir("c3-full");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    ctx.skip(`cannot mount a tmpfs here: ${(err as Error).message.split("\n")[0]}`);
  }
  ctx.onTestFinished(() => void execFileSync("umount", [dir]));
  return dir;
}

describe.each([
  ["localStore", localStore],
  ["driveStore", driveStore],
] as const)("C3: %s", (_kind, makeStore: (root: string) => CheckpointStore) => {
  it("C3: the next put removes the staging of killed puts, and spares a live writer's", async () => {
    const root = tempDir("c3-store");
    const dead = deadPid();
    leave(root, `.tmp-step-000002-${dead}-0a1b2c3d`);
    leave(root, `.old-step-000001-${dead}-0a1b2c3d`);
    const live = leave(root, `.tmp-step-000003-${livePid}-0a1b2c3d`);
    await makeStore(root).put("step-000004", source());
    expect(readdirSync(root).sort()).toEqual([live, "step-000004"]);
  });

  it("C3: a restore removes the staging a killed restore left beside its target", async () => {
    const root = tempDir("c3-store");
    const store = makeStore(root);
    await store.put("step-000001", source());
    const parent = tempDir("c3-restore");
    const dead = deadPid();
    leave(parent, `.out.tmp-${dead}-0a1b2c3d`);
    const live = leave(parent, `.out.tmp-${livePid}-0a1b2c3d`);
    await store.get("step-000001", path.join(parent, "out"));
    expect(readdirSync(parent).sort()).toEqual([live, "out"]);
  });
});

describe("C3: exportModel", () => {
  it("C3: an export removes a killed export's staging (its own and the bridge's), and spares a live one's", async () => {
    const parent = tempDir("c3-export");
    const dead = deadPid();
    leave(parent, `.out.export-${dead}-0a1b2c3d`);
    leave(parent, `.out.old-${dead}-0a1b2c3d`);
    leave(parent, `..out.export-${livePid}-0a1b2c3d.tmp-${dead}-01234567`);
    const live = leave(parent, `.out.export-${livePid}-0a1b2c3d`);
    const { model, tokenizer } = fakeModel(tempDir("c3-tok"));
    await exportModel(model, tokenizer, path.join(parent, "out"));
    expect(readdirSync(parent).sort()).toEqual([live, "out"]);
  });

  it("C3: an export SIGKILLed mid-way leaves staging that the next export removes", async () => {
    const parent = tempDir("c3-export-kill");
    const tokDir = tempDir("c3-tok");
    const script = path.join(tempDir("c3-child"), "export.mts");
    writeFileSync(
      script,
      `import { exportModel } from ${JSON.stringify(path.join(repoRoot, "cells-lib/export/export-model.ts"))};
import { fakeModel } from ${JSON.stringify(path.join(repoRoot, "test/corpus/fake-export.ts"))};
const { model, tokenizer } = fakeModel(${JSON.stringify(tokDir)}, async () => {
  console.log("staged");
  await new Promise(() => setInterval(() => {}, 1000));
});
await exportModel(model, tokenizer, ${JSON.stringify(path.join(parent, "out"))});
`,
    );
    // tsx as a loader, not its CLI (which runs the script in a second process that would outlive the kill).
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    for await (const line of createInterface({ input: child.stdout! })) if (line === "staged") break;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    expect(readdirSync(parent)).toEqual([
      expect.stringMatching(new RegExp(`^\\.out\\.export-${child.pid}-[0-9a-f]+$`)),
    ]);

    const { model, tokenizer } = fakeModel(tokDir);
    await exportModel(model, tokenizer, path.join(parent, "out"));
    expect(readdirSync(parent)).toEqual(["out"]);
  });
});

describe("C3: temporary files and directories", () => {
  it("C3: writeFileAtomic removes a killed writer's temporary file", async () => {
    const dir = tempDir("c3-atomic");
    const file = path.join(dir, "out.ipynb");
    writeFileSync(`${file}.tmp-${deadPid()}-1765000000000`, "partial");
    writeFileSync(`${file}.tmp-${livePid}-1765000000000`, "partial");
    await writeFileAtomic(file, "{}");
    expect(readdirSync(dir).sort()).toEqual(["out.ipynb", `out.ipynb.tmp-${livePid}-1765000000000`]);
  });

  it("C3: the runner's private jupyter home left by a killed run is removed by the next run", async () => {
    const tmp = tempDir("c3-tmpdir");
    const stale = leave(tmp, `thinkcells-jupyter-${deadPid()}-AbC123`, "data/kernels/thinkcells/kernel.json");
    const live = leave(tmp, `thinkcells-jupyter-${livePid}-AbC123`, "data/kernels/thinkcells/kernel.json");
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      const server = await startJupyterServer(tmp);
      expect(readdirSync(tmp)).not.toContain(stale);
      await server.stop();
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    expect(readdirSync(tmp)).toEqual([live]);
  });
});

describe("C3: a full disk", () => {
  it("C3: a checkpoint put's ENOSPC names the file being written, and leaves no staging", async (ctx) => {
    const root = fullDisk(ctx);
    await expect(localStore(root).put("step-000001", source())).rejects.toThrow(
      new RegExp(`^${root}/\\.tmp-step-000001-${process.pid}-[0-9a-f]+/state\\.safetensors: ENOSPC`),
    );
    expect(readdirSync(root)).toEqual([]);
  });

  it("C3: writeFileAtomic's ENOSPC names the file being written, and leaves no temporary file", async (ctx) => {
    const dir = fullDisk(ctx);
    const file = path.join(dir, "executed.ipynb");
    await expect(writeFileAtomic(file, Buffer.alloc(200_000))).rejects.toThrow(
      new RegExp(`^${file}\\.tmp-${process.pid}-[0-9a-f]+: ENOSPC`),
    );
    expect(existsSync(dir) && readdirSync(dir)).toEqual([]);
  });
});
