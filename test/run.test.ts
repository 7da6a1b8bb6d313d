/** `thinkcells run` end to end: jupyter-server + the thinkcells Deno kernel, through the CLI. */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { venvProgram } from "../cells-lib/util/project-python.ts";
import { startJupyterServer } from "../kernel/jupyter-server.ts";
import { dumpDom } from "./chromium.ts";
import { repoRoot, tempDir } from "./helpers.ts";

const fixtures = path.join(repoRoot, "test/fixtures");

function thinkcells(args: string[], cwd = repoRoot): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(repoRoot, "bin/thinkcells.mjs"), ...args],
      { cwd, timeout: 120_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** What these tests read of a saved notebook (nbformat 4). */
type Figure = { data: { x: number[]; y: number[] }[] };
type Output = { output_type: string; data: { "application/vnd.plotly.v1+json": Figure; "text/plain": string } };
type Cell = {
  id: string;
  cell_type: string;
  source: string;
  metadata: { tags?: string[]; thinkcells?: { duration_s: number }; execution?: Record<string, string> };
  outputs?: Output[];
  execution_count?: number | null;
};
const read = (file: string) =>
  JSON.parse(readFileSync(file, "utf8")) as {
    nbformat: number;
    nbformat_minor: number;
    metadata: Record<string, unknown>;
    cells: Cell[];
  };

/** nbformat's own validator (in the project's environment, with jupyter-server). */
function validateNbformat(file: string): Promise<string> {
  const code =
    "import sys, nbformat; nb = nbformat.read(sys.argv[1], as_version=4); nbformat.validate(nb); print(nb.nbformat, nb.nbformat_minor)";
  return new Promise((resolve, reject) =>
    execFile(venvProgram("python"), ["-c", code, file], (err, stdout, stderr) =>
      err ? reject(new Error(stderr)) : resolve(stdout.trim()),
    ),
  );
}

describe("thinkcells run", () => {
  it("runs a notebook outside the project with parameters, a live chart and an HTML report", async () => {
    // README, "A notebook of your own": a notebook in a directory of its own, run from the one
    // above; the kernel's launcher maps "thinkcells" to this checkout, relative paths in cells (a
    // module beside the notebook, files thinkcells writes, files the cell writes) mean the
    // notebook's directory, and --out/--html paths the directory the command runs in.
    const top = tempDir("run");
    const dir = path.join(top, "notebooks");
    mkdirSync(dir);
    const sample = read(path.join(fixtures, "run-sample.ipynb"));
    const ownFiles = [
      'import { localStore } from "thinkcells";',
      'import { greeting } from "./helper.ts";',
      'await Deno.mkdir("runs/work", { recursive: true });',
      'await Deno.writeTextFile("runs/work/note.txt", greeting);',
      'await localStore("runs/ckpt").put("step-1", "runs/work");',
    ].join("\n");
    sample.cells.push({
      id: "own-files",
      cell_type: "code",
      source: ownFiles,
      metadata: {},
      outputs: [],
      execution_count: null,
    });
    writeFileSync(path.join(dir, "sample.ipynb"), JSON.stringify(sample));
    writeFileSync(path.join(dir, "helper.ts"), 'export const greeting = "from a module beside the notebook";\n');
    const run = await thinkcells(
      [
        "run",
        "notebooks/sample.ipynb",
        "-p",
        "steps=3",
        "-p",
        "label=from cli",
        "-p",
        'flags={"fast":true}',
        "--out",
        "executed.ipynb",
        "--html",
        "report.html",
      ],
      top,
    );
    const out = path.join(top, "executed.ipynb");
    const html = path.join(top, "report.html");
    expect(run.stderr).toMatch(/\[3\/6\] cell 4: import \{ liveChart \} from "thinkcells";/);
    expect(run.stderr).toMatch(/\[6\/6\] cell 7 done in .*\(elapsed /);
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(path.join(dir, "runs/ckpt/step-1/note.txt"), "utf8")).toBe("from a module beside the notebook");

    expect(await validateNbformat(out)).toBe("4 5");
    const nb = read(out);
    expect(nb.metadata.kernelspec).toEqual({
      name: "thinkcells",
      display_name: "TypeScript (thinkcells)",
      language: "typescript",
    });
    expect(nb.metadata.thinkcells).toMatchObject({ status: "ok", parameters: { steps: "3", label: "from cli" } });
    const ids = nb.cells.map((c) => c.id);
    expect(ids[1]).toBe("params");
    const injected = nb.cells[2]!;
    expect(injected.metadata.tags).toEqual(["injected-parameters"]);
    expect(injected.source).toBe(
      '// Parameters injected by `thinkcells run`.\nconst steps = 3;\nconst label: string = "from cli";\nconst flags = {"fast":true};\n',
    );

    // The live chart was displayed once and updated; the saved output is the final figure.
    const chart = nb.cells.find((c) => c.id === "chart")!;
    expect(chart.outputs).toHaveLength(1);
    const figure = chart.outputs![0]!.data["application/vnd.plotly.v1+json"];
    expect(figure.data[0]!.x).toEqual([1, 2, 3]);
    expect(figure.data[0]!.y).toEqual([1.5, 0.75, 0.5]);
    expect(chart.outputs![0]!.data["text/plain"]).toContain("last 0.5 at step 3");

    const printed = nb.cells.find((c) => c.id === "print")!;
    expect(printed.outputs).toEqual([
      { output_type: "stream", name: "stdout", text: `label=from cli steps=3 fast=true\n${dir}\n` },
    ]);
    const result = nb.cells.find((c) => c.id === "result")!;
    expect(result.outputs![0]).toMatchObject({
      output_type: "execute_result",
      data: { "text/plain": '{ steps: 3, label: "from cli" }' },
    });
    for (const cell of nb.cells.filter((c) => c.cell_type === "code")) {
      expect(cell.execution_count).toBeGreaterThan(0);
      expect(cell.metadata.thinkcells!.duration_s).toBeGreaterThanOrEqual(0);
      expect(Date.parse(cell.metadata.execution!["shell.execute_reply"]!)).toBeGreaterThanOrEqual(
        Date.parse(cell.metadata.execution!["iopub.execute_input"]!),
      );
    }

    // The report draws the chart offline in a real browser.
    const dom = await dumpDom(html);
    expect(dom).toContain("<h1");
    expect(dom).toContain("main-svg");
    expect(dom.match(/class="[^"]*\btrace\b[^"]*\bscatter\b/g)?.length).toBe(1);
    expect(dom).toContain("label=from cli steps=3");
  }, 180_000);

  it("saves the failing cell's error, skips the rest and exits non-zero naming the cell (on a --server)", async () => {
    const dir = tempDir("run-fail");
    const out = path.join(dir, "failed.ipynb");
    const server = await startJupyterServer(fixtures);
    const run = await thinkcells([
      "run",
      path.join(fixtures, "run-failing.ipynb"),
      "--out",
      out,
      "--server",
      `${server.baseUrl}?token=${server.token}`,
    ]).finally(() => server.stop());
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("run-failing.ipynb: cell 2 (id fails) failed: Error: boom from cell two");
    await validateNbformat(out);
    const nb = read(out);
    expect(nb.metadata.thinkcells).toMatchObject({ status: "failed", failed_cell: 2 });
    expect(nb.cells[0]!.outputs).toEqual([{ output_type: "stream", name: "stdout", text: "before\n" }]);
    expect(nb.cells[1]!.outputs![0]).toMatchObject({
      output_type: "error",
      ename: "Error",
      evalue: "boom from cell two",
    });
    expect(nb.cells[2]!).toMatchObject({ outputs: [], execution_count: null });
  }, 180_000);

  it("saves a syntax error as the cell's error output, naming the cell, its line and the parser's message", async () => {
    // Deno's kernel answers such a cell with only "Error: Execution failed" and no error output.
    const dir = tempDir("run-syntax");
    const sources = {
      ok: 'console.log("before");',
      syntax: "const a = 1;\nconst b = (;\nconsole.log(b);",
      after: 'console.log("never runs");',
    };
    const cells = Object.entries(sources).map(([id, source]) => ({
      id,
      cell_type: "code",
      source,
      metadata: {},
      outputs: [],
      execution_count: null,
    }));
    writeFileSync(
      path.join(dir, "syntax.ipynb"),
      JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }),
    );
    const out = path.join(dir, "executed.ipynb");
    const run = await thinkcells(["run", path.join(dir, "syntax.ipynb"), "--out", out]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      "syntax.ipynb: cell 2 (id syntax) failed at line 2:12: SyntaxError: Expression expected",
    );
    await validateNbformat(out);
    const nb = read(out);
    expect(nb.metadata.thinkcells).toMatchObject({ status: "failed", failed_cell: 2 });
    expect(nb.cells[1]!.outputs).toEqual([
      {
        output_type: "error",
        ename: "SyntaxError",
        evalue: "Expression expected",
        traceback: [
          "SyntaxError: Expression expected",
          "2 | const b = (;",
          "  |            ^",
          "    at line 2:12 of the cell",
        ],
      },
    ]);
    expect(nb.cells[2]!).toMatchObject({ outputs: [], execution_count: null });
  }, 180_000);

  it("stops a cell over --timeout and reports it", async () => {
    const dir = tempDir("run-timeout");
    const out = path.join(dir, "timeout.ipynb");
    const started = Date.now();
    const run = await thinkcells(["run", path.join(fixtures, "run-slow.ipynb"), "--timeout", "3", "--out", out]);
    expect(Date.now() - started).toBeLessThan(100_000);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      "run-slow.ipynb: cell 2 (id sleeps) failed: CellTimeoutError: the cell ran longer than --timeout 3 s",
    );
    const nb = read(out);
    expect(nb.cells[1]!.outputs).toEqual([
      expect.objectContaining({ output_type: "error", ename: "CellTimeoutError" }),
    ]);
    expect(nb.cells[2]!.execution_count).toBeNull();
  }, 180_000);

  it("rejects an unknown parameter before starting anything, listing the known ones", async () => {
    const dir = tempDir("run-bad");
    const run = await thinkcells([
      "run",
      path.join(fixtures, "run-sample.ipynb"),
      "-p",
      "stepz=3",
      "--out",
      path.join(dir, "x.ipynb"),
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      "-p stepz: unknown parameter; the parameters cell (cell 2) declares steps, label, scale, flags",
    );
    expect(existsSync(path.join(dir, "x.ipynb"))).toBe(false);
  });
});

describe("thinkcells kernel install", () => {
  it("writes the kernelspec idempotently and Jupyter lists it", async () => {
    const prefix = tempDir("kernelspec");
    const first = await thinkcells(["kernel", "install", "--prefix", prefix]);
    expect(first.stdout).toContain(`installed kernelspec thinkcells in ${prefix}/share/jupyter/kernels/thinkcells`);
    const again = await thinkcells(["kernel", "install", "--prefix", prefix]);
    expect(again.stdout).toContain("already installed");
    const spec = JSON.parse(readFileSync(path.join(prefix, "share/jupyter/kernels/thinkcells/kernel.json"), "utf8"));
    expect(spec).toMatchObject({
      argv: [path.join(repoRoot, "kernel/launch.sh"), "{connection_file}"],
      language: "typescript",
    });
    const listed = await new Promise<string>((resolve, reject) =>
      execFile(
        venvProgram("python"),
        ["-m", "jupyter_client.kernelspecapp", "list", "--json"],
        { env: { ...process.env, JUPYTER_PATH: path.join(prefix, "share/jupyter") } },
        (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
      ),
    );
    expect(JSON.parse(listed).kernelspecs.thinkcells.spec.display_name).toBe("TypeScript (thinkcells)");
  });
});
