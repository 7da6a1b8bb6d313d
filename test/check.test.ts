import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { checkNotebook, joinCells } from "../kernel/check.ts";
import { repoRoot, tempDir } from "./helpers.ts";

const fixture = (name: string) => path.join(repoRoot, "test/fixtures", name);

describe("thinkcells check: type-checks a notebook's code cells together", () => {
  it("passes a notebook that imports thinkcells and uses top-level await", async () => {
    expect(await checkNotebook(fixture("check-ok.ipynb"))).toEqual({ ok: true, problems: [], output: "" });
  });

  it("names the cell and the line of a type error", async () => {
    const result = await checkNotebook(fixture("check-type-error.ipynb"));
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([
      { cell: 3, line: 2, column: 7, message: "TS2322: Type 'number' is not assignable to type 'string'." },
    ]);
  });

  it("runs as `thinkcells check`, exiting non-zero with the cell and line", async () => {
    const cli = path.join(repoRoot, "bin/thinkcells.mjs");
    const ok = await promisify(execFile)("node", [cli, "check", fixture("check-ok.ipynb")]);
    expect(ok.stdout).toMatch(/check-ok\.ipynb: no type errors/);
    const bad = await promisify(execFile)("node", [cli, "check", fixture("check-type-error.ipynb")]).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toContain("check-type-error.ipynb: cell 3, line 2:7: TS2322: Type 'number' is not assignable to type 'string'.");
  });

  it("joins code cells in order and remembers where each starts", () => {
    const { code, starts } = joinCells([
      { cell_type: "code", source: ["a\n", "b"] },
      { cell_type: "markdown", source: "text" },
      { cell_type: "code", source: "c\n" },
    ]);
    expect(code).toBe("a\nb\nc\nexport {};\n");
    expect(starts).toEqual([{ cell: 1, line: 1 }, { cell: 3, line: 3 }]);
  });

  it("explains a file that is not a notebook", async () => {
    const dir = tempDir("check");
    writeFileSync(path.join(dir, "bad.ipynb"), "{ not json");
    await expect(checkNotebook(path.join(dir, "bad.ipynb"))).rejects.toThrow(/bad\.ipynb: not valid JSON/);
    writeFileSync(path.join(dir, "v3.ipynb"), JSON.stringify({ nbformat: 3, nbformat_minor: 0, cells: [] }));
    await expect(checkNotebook(path.join(dir, "v3.ipynb"))).rejects.toThrow(/v3\.ipynb: not an nbformat 4 notebook: nbformat/);
    await expect(checkNotebook(path.join(dir, "missing.ipynb"))).rejects.toThrow(/missing\.ipynb: cannot read the notebook \(ENOENT\)/);
  });
});
