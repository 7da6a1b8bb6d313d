/** tslab, Node's TypeScript kernel (the npm package, not a stand-in): it runs notebooks/01 on the
 * library's JavaScript build, type-checks the cells with its own TypeScript against the build's
 * .d.ts, shows tables and charts as HTML, and updates a live chart and a progress bar in place.
 * (Its stop button: test/interrupt.test.ts.) */
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Output } from "../kernel/outputs.ts";
import { describeFailure, type ExecutedNotebook, runNotebook } from "../kernel/run.ts";
import { repoRoot, tempDir } from "./helpers.ts";
import { runWithOwnBridge } from "./notebooks.ts";
import { tslabProjectDir, useTslabKernel } from "./tslab-kernelspec.ts";

useTslabKernel();

const codeCell = (id: string, source: string) => ({ cell_type: "code", id, metadata: {}, source, outputs: [] });

/** A notebook of code cells in `dir`; returns its path. */
function writeNotebook(dir: string, name: string, cells: ReturnType<typeof codeCell>[]): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells }));
  return file;
}

const outputsOf = (notebook: ExecutedNotebook, id: string): Output[] =>
  notebook.cells.find((c) => c.id === id)?.outputs ?? [];

const html = (output: Output | undefined): string =>
  output?.output_type === "display_data" ? String(output.data["text/html"] ?? "") : "";

describe("tslab kernel", () => {
  it("type-checks the build's .d.ts with tslab's own TypeScript, as it checks a cell", () => {
    // tslab's copy, from tslab's folder: the TypeScript its kernel runs (5.0, older than the build's).
    const fromTslab = createRequire(path.join(repoRoot, "node_modules/tslab/package.json"));
    const ts = fromTslab("@tslab/typescript-for-tslab") as typeof import("typescript");
    expect(ts.version).toBe("5.0.4");
    // tslab's compiler options (its converter.ts), but with the library's declarations checked too:
    // a type too new for 5.0 in them would otherwise turn into `any` in a cell without a word.
    const options = {
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      esModuleInterop: true,
      target: ts.ScriptTarget.ES2022,
      lib: ["lib.es2022.d.ts"],
      noEmit: true,
      typeRoots: [path.join(repoRoot, "node_modules/@types")],
    };
    // As tslab's checker finds `thinkcells` for a cell in notebooks/: node_modules/thinkcells, then package.json's `types`.
    const cell = path.join(repoRoot, "notebooks/__tslab__.ts");
    const found = ts.resolveModuleName("thinkcells", cell, options, ts.sys).resolvedModule?.resolvedFileName;
    expect(found).toBe(path.join(repoRoot, "dist/index.d.ts"));
    const program = ts.createProgram([found!], options);
    const inDist = (file: string | undefined) => file?.startsWith(path.join(repoRoot, "dist/")) === true;
    expect(program.getSourceFiles().filter((f) => inDist(f.fileName)).length).toBeGreaterThan(100);
    const ours = ts
      .getPreEmitDiagnostics(program)
      .filter((d) => inDist(d.file?.fileName))
      .map((d) => `${d.file?.fileName}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    expect(ours).toEqual([]);
  });

  it("runs notebooks/01-quickstart with rich outputs", async () => {
    const dir = tempDir("tslab-01");
    const { notebook } = await runWithOwnBridge(path.join(repoRoot, "notebooks/01-quickstart.ipynb"), dir, "tslab-01", {
      kernel: "tslab",
      parameters: new Map([
        ["modelDir", path.join(dir, "stories260K")],
        ["maxNewTokens", "16"],
      ]),
      out: path.join(dir, "executed.ipynb"),
      timeoutS: 240,
    });
    expect(notebook.metadata.kernelspec).toMatchObject({ name: "tslab" });
    const code = notebook.cells.filter((c) => c.cell_type === "code");
    expect(code.every((c) => typeof c.execution_count === "number")).toBe(true);
    // tslab writes type errors and exceptions to stderr; a clean run has none.
    const all = code.flatMap((c) => c.outputs ?? []);
    expect(all.filter((o) => o.output_type === "error" || (o.output_type === "stream" && o.name === "stderr"))).toEqual(
      [],
    );

    // A cell's last expression: tslab prints it to stdout.
    expect(outputsOf(notebook, "c03")).toEqual([
      {
        output_type: "stream",
        name: "stdout",
        text: expect.stringMatching(/^\{ device: '\w+', torch: '[^']+', models: \d+ \}\n$/),
      },
    ]);
    const [tokens, ...moreTokens] = outputsOf(notebook, "c07");
    expect(moreTokens).toEqual([]);
    expect(html(tokens)).toMatch(/^<table class="thinkcells-table"><caption[^>]*>Tokens<\/caption>/);
    expect(outputsOf(notebook, "c09")).toEqual([
      { output_type: "stream", name: "stdout", text: expect.stringMatching(/\S/) },
    ]);
    const [chart, ...moreCharts] = outputsOf(notebook, "c11");
    expect(moreCharts).toEqual([]);
    // The chart's HTML: plotly draws it where scripts run; its static SVG shows where they do not.
    expect(html(chart)).toMatch(/^<div id="thinkcells-chart-[^"]+" class="thinkcells-chart"/);
    expect(html(chart)).toContain('<img class="thinkcells-chart-static" alt="log p(token) of the greedy story"');
    expect(html(chart)).toContain("data:image/svg+xml");
  }, 600_000);

  it("updates a live chart and a progress bar in place, in a notebook outside the checkout", async () => {
    const dir = tslabProjectDir("tslab-live");
    const file = writeNotebook(dir, "live.ipynb", [
      codeCell(
        "show",
        'import { liveChart, progress } from "thinkcells";\n\n' +
          'const bar = progress({ total: 20, label: "my loop", unit: "step" });\n' +
          'const curves = liveChart({ title: "my loop", metrics: ["loss"], throttleMs: 50 });\n',
      ),
      // A later cell moves both: its messages update the outputs the first cell showed.
      codeCell(
        "loop",
        "for (let step = 1; step <= 20; step++) {\n" +
          "  curves.push(step, { loss: 2 / step });\n" +
          "  bar.tick(1, { loss: (2 / step).toFixed(3) });\n" +
          "  await new Promise((resolve) => setTimeout(resolve, 20));\n" +
          "}\n" +
          "curves.close();\n" +
          "bar.done();\n",
      ),
    ]);
    const { notebook } = await runWithOwnBridge(file, dir, "tslab-live", { kernel: "tslab", timeoutS: 120 });
    expect(outputsOf(notebook, "loop")).toEqual([]);
    const [bar, chart, ...more] = outputsOf(notebook, "show");
    expect(more).toEqual([]);
    // Shown at 0/20 when the first cell ran; 20/20 only through update_display_data.
    expect(html(bar)).toMatch(/^<div class="thinkcells-progress"[^>]*><span[^>]*>my loop<\/span> <progress value="1"/);
    expect(html(bar)).toContain("20/20 &middot; 100%");
    expect(html(bar)).toContain("done in");
    expect(html(bar)).toContain("loss=0.100");
    expect(html(chart)).toMatch(/^<div id="thinkcells-chart-[^"]+" class="thinkcells-chart"/);
    expect(html(chart)).toContain("data:image/svg+xml");
  }, 300_000);

  it("names a failed cell's error, which tslab writes to stderr instead of its reply", async () => {
    const dir = tempDir("tslab-errors");
    const failure = async (source: string) => {
      const file = writeNotebook(dir, "fails.ipynb", [codeCell("ok", "const n = 1;\n"), codeCell("fails", source)]);
      const { failure } = await runNotebook(file, { kernel: "tslab", timeoutS: 60 });
      return failure && describeFailure("fails.ipynb", failure);
    };
    // tslab type-checks each cell before it runs it.
    expect(await failure("const s: string = n;\n")).toBe(
      "fails.ipynb: cell 2 (id fails) failed: Error: 1:7 - Type 'number' is not assignable to type 'string'.",
    );
    // Node prints the line that threw before the error's name and message.
    expect(await failure('throw new RangeError("too far");\n')).toBe(
      "fails.ipynb: cell 2 (id fails) failed: RangeError: too far",
    );
  }, 120_000);
});
