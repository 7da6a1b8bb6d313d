/** S3: a deno.json planted by another user above a notebook must not choose what "thinkcells"
 * means. The launcher (kernel/launch.sh) and the headless runner ignore, and warn about, a
 * deno.json(c) that another user owns or could have written. */
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot, tempDir } from "../helpers.ts";

const OTHER = "thinkcells-other";

/** The second, unprivileged user's ids (created when missing); undefined unless we run as root. */
function otherUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync("id", [flag, OTHER], { encoding: "utf8" }).trim());
  try {
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    execFileSync("useradd", ["--system", "--no-create-home", OTHER]);
    return { uid: id("-u"), gid: id("-g") };
  }
}

/** Writes a deno.json(c) mapping "thinkcells" to code that leaves a `pwned` file next to it, owned
 * by the second user when there is one. */
function plant(dir: string, name = "deno.json"): string {
  const config = path.join(dir, name);
  const evil = path.join(dir, "evil.ts");
  writeFileSync(config, JSON.stringify({ imports: { thinkcells: "./evil.ts" } }));
  writeFileSync(
    evil,
    'Deno.writeTextFileSync(new URL("./pwned", import.meta.url), "ran");\nexport const show = "planted";\n',
  );
  const other = otherUser();
  for (const file of [config, evil]) if (other) chownSync(file, other.uid, other.gid);
  return config;
}

/** A world-writable directory with the sticky bit, like /tmp. */
function worldWritableDir(prefix: string): string {
  const dir = tempDir(prefix);
  chmodSync(dir, 0o1777);
  return dir;
}

/** Runs a copy of kernel/launch.sh from `cwd` with a stand-in Deno that prints where it started. */
function launch(cwd: string): { cwd: string; notebookDir: string; stderr: string } {
  const project = tempDir("launch-project");
  mkdirSync(path.join(project, "kernel"));
  mkdirSync(path.join(project, "node_modules/.bin"), { recursive: true });
  copyFileSync(path.join(repoRoot, "kernel/launch.sh"), path.join(project, "kernel/launch.sh"));
  const deno = path.join(project, "node_modules/.bin/deno");
  writeFileSync(deno, `#!/bin/sh\necho "$(pwd)"\necho "\${THINKCELLS_NOTEBOOK_DIR:-}"\n`);
  chmodSync(deno, 0o755);
  const connection = path.join(project, "connection.json");
  writeFileSync(connection, "{}");
  const run = spawnSync("sh", [path.join(project, "kernel/launch.sh"), connection], { cwd, encoding: "utf8" });
  expect(run.status, run.stderr).toBe(0);
  const [started, notebookDir] = run.stdout.split("\n");
  return { cwd: started === project ? "project" : started!, notebookDir: notebookDir!, stderr: run.stderr };
}

describe("S3: kernel/launch.sh and a notebook's deno.json", () => {
  it("S3: ignores, and names, a deno.json planted in a world-writable notebook directory", () => {
    const dir = worldWritableDir("s3-tmp");
    const config = plant(dir);
    const started = launch(dir);
    expect(started).toMatchObject({ cwd: "project", notebookDir: dir });
    expect(started.stderr).toContain(`ignoring ${config}`);
    expect(started.stderr).toContain(`${dir} is writable by every user`);
  });

  it("S3: ignores a deno.jsonc in a world-writable directory above the notebook", () => {
    const top = worldWritableDir("s3-above");
    const notebookDir = path.join(top, "notebooks");
    mkdirSync(notebookDir, { mode: 0o755 });
    const config = plant(top, "deno.jsonc");
    const started = launch(notebookDir);
    expect(started).toMatchObject({ cwd: "project", notebookDir });
    expect(started.stderr).toContain(`ignoring ${config}`);
  });

  it("S3: ignores a deno.json that another user owns, in the notebook's own directory", (ctx) => {
    if (!otherUser()) ctx.skip(`needs root to create and use a second user (${OTHER})`);
    const dir = tempDir("s3-owned");
    chmodSync(dir, 0o755);
    const config = plant(dir);
    const started = launch(dir);
    expect(started).toMatchObject({ cwd: "project", notebookDir: dir });
    expect(started.stderr).toMatch(new RegExp(`ignoring ${config}.*owned by another user`));
  });

  it("S3: keeps a notebook's own deno.json", () => {
    const dir = tempDir("s3-own");
    chmodSync(dir, 0o755);
    writeFileSync(path.join(dir, "deno.json"), "{}", { mode: 0o644 });
    expect(launch(dir)).toEqual({ cwd: dir, notebookDir: "", stderr: "" });
  });
});

describe("S3: thinkcells run", () => {
  it("S3: runs a notebook under a world-writable directory with the project's thinkcells, warning about the planted deno.json", async () => {
    const dir = worldWritableDir("s3-run");
    const config = plant(dir);
    const notebook = path.join(dir, "nb.ipynb");
    writeFileSync(
      notebook,
      JSON.stringify({
        nbformat: 4,
        nbformat_minor: 5,
        metadata: {},
        cells: [
          {
            id: "a",
            cell_type: "code",
            metadata: {},
            outputs: [],
            execution_count: null,
            source: 'import { show } from "thinkcells";\nconsole.log(typeof show);\n',
          },
        ],
      }),
    );
    const out = path.join(tempDir("s3-run-out"), "out.ipynb");
    const run = await new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [path.join(repoRoot, "bin/thinkcells.mjs"), "run", notebook, "--out", out],
        { timeout: 120_000 },
        (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      ),
    );
    expect(existsSync(path.join(dir, "pwned"))).toBe(false);
    expect(run.stderr).toContain(`ignoring ${config}`);
    expect(run.code, run.stderr).toBe(0);
    const cell = JSON.parse(readFileSync(out, "utf8")).cells[0];
    expect(cell.outputs).toEqual([{ output_type: "stream", name: "stdout", text: "function\n" }]);
  }, 180_000);
});
