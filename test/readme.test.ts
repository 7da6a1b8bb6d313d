/** The README's TypeScript blocks, type-checked as written and run in order through the headless
 * runner at the small sizes their info strings give (see test/readme.ts).
 * THINKCELLS_README_FULL=1 runs them as written instead (minutes: how the README's Stage 1 →
 * Stage 2 numbers were measured), prints the executed notebook's path and asks Stage 2 for the
 * README's claim, 5 points or more over Stage 1. */
import { readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { describe, expect, it } from "vitest";
import { checkNotebook } from "../kernel/check.ts";
import { repoRoot, tempDir } from "./helpers.ts";
import { runWithOwnBridge } from "./notebooks.ts";
import { atTestSizes, notebookOf, readmeBlocks } from "./readme.ts";

const full = process.env.THINKCELLS_README_FULL === "1";
const blocks = readmeBlocks(readFileSync(path.join(repoRoot, "README.md"), "utf8"));

describe("README blocks: the fence's words", () => {
  const fence = (info: string, code: string) => readmeBlocks(`text\n\n\`\`\`${info}\n${code}\n\`\`\`\n`)[0]!;

  it("put test values after `name:`, `name =` and `name(`, every occurrence", () => {
    const b = fence(
      "ts test: steps=2 run=1",
      "const steps = 200;\nf({ steps: 40, totalSteps: 9 });\nif (steps === 3) t.run(20);\nt.run();",
    );
    expect(atTestSizes(b)).toBe(
      "const steps = 2;\nf({ steps: 2, totalSteps: 9 });\nif (steps === 3) t.run(1);\nt.run();\n",
    );
  });

  it("refuse a test value the block never writes, and unknown words", () => {
    expect(() => atTestSizes(fence("ts test: count=3", "f({ steps: 40 });"))).toThrow(
      /line 3: test value count=3, but the block writes no value after "count"/,
    );
    expect(() => fence("ts quick", "x")).toThrow(/line 3: unknown word "quick"/);
  });

  it("skip other languages and mark no-run blocks", () => {
    const parsed = readmeBlocks("```sh\nnpm test\n```\n```typescript no-run\nawait gpu();\n```\n");
    expect(parsed).toEqual([{ line: 4, code: "await gpu();\n", run: false, testValues: new Map() }]);
  });
});

describe("README blocks", () => {
  it("reads every ts block, with its test values and no-run marks", () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    expect(blocks.filter((b) => !b.run).length).toBeGreaterThanOrEqual(1);
    // Each test value names a value the block writes (else atTestSizes throws).
    for (const b of blocks) atTestSizes(b);
  });

  it("type-check together, as written, in order", async () => {
    const file = path.join(tempDir("readme-check"), "readme.ipynb");
    writeFileSync(file, JSON.stringify(notebookOf(blocks.map((b) => b.code))));
    const result = await checkNotebook(file);
    expect(
      result.problems
        .map((p) => `README block ${p.cell} (line ${blocks[p.cell - 1]!.line}), line ${p.line}: ${p.message}`)
        .join("\n") + result.output,
    ).toBe("");
  }, 180_000);

  it(
    `run in order through the headless runner (${full ? "as written" : "at test sizes"}), Stage 2 reporting its accuracies`,
    async () => {
      const dir = tempDir("readme-run");
      // The README's paths are relative to the notebook: assets/ as in a checkout, runs/ written here.
      symlinkSync(path.join(repoRoot, "assets"), path.join(dir, "assets"));
      const file = path.join(dir, "readme.ipynb");
      writeFileSync(
        file,
        JSON.stringify(notebookOf(blocks.filter((b) => b.run).map((b) => (full ? b.code : atTestSizes(b))))),
      );
      const out = path.join(dir, "executed.ipynb");
      const result = await runWithOwnBridge(file, dir, "readme", {
        out,
        timeoutS: full ? 1800 : 240,
        ...(full ? { log: (line: string) => console.error(line) } : {}),
      });
      if (full) console.error(`executed notebook: ${out}`);
      const texts = result.notebook.cells
        .flatMap((c) => c.outputs ?? [])
        .map((o) => ((o as { data?: Record<string, unknown> }).data?.["text/plain"] ?? "") as string);
      const reported = texts.map((t) => /\{ sft: ([\d.e-]+), grpo: ([\d.e-]+) \}/.exec(t)).find((m) => m);
      expect(reported, "Stage 2's last line shows { sft, grpo }").toBeDefined();
      const [sft, grpo] = reported!.slice(1).map(Number) as [number, number];
      for (const accuracy of [sft, grpo]) expect(accuracy >= 0 && accuracy <= 1, `accuracy ${accuracy}`).toBe(true);
      if (full) expect(grpo - sft).toBeGreaterThanOrEqual(0.05);
    },
    full ? 3_600_000 : 600_000,
  );
});
