import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { checkNotebook, describeProblem, joinCells } from "../kernel/check.ts";
import { findSyntaxError, parseDenoDiagnostics } from "../kernel/deno-diagnostics.ts";
import { repoRoot, tempDir } from "./helpers.ts";

const fixture = (name: string) => path.join(repoRoot, "test/fixtures", name);
const cli = path.join(repoRoot, "bin/thinkcells.mjs");

/** An nbformat 4.4 notebook (cells without ids) of these code cells. */
function writeNotebook(file: string, sources: string[]): string {
  const cells = sources.map((source) => ({
    cell_type: "code",
    execution_count: null,
    metadata: {},
    outputs: [],
    source,
  }));
  writeFileSync(file, JSON.stringify({ nbformat: 4, nbformat_minor: 4, metadata: {}, cells }));
  return file;
}

describe("thinkcells check: type-checks a notebook's code cells together", () => {
  it("passes a notebook that imports thinkcells and uses top-level await", async () => {
    expect(await checkNotebook(fixture("check-ok.ipynb"))).toEqual({ ok: true, problems: [], output: "" });
  });

  it("names the cell and the line of a type error", async () => {
    const result = await checkNotebook(fixture("check-type-error.ipynb"));
    expect(result.ok).toBe(false);
    expect(result.problems).toEqual([
      {
        cell: 3,
        name: "cell 3 (id c2)",
        line: 2,
        column: 7,
        message: "TS2322: Type 'number' is not assignable to type 'string'.",
      },
    ]);
  });

  it("names the cell, its line and the parser's message for a syntax error, not deno's temporary file", async () => {
    const file = writeNotebook(path.join(tempDir("check-syntax"), "syntax.ipynb"), [
      "const a = 1;\n",
      "const b = a + 1;\nconst c = (;\n",
      "console.log(c);\n",
    ]);
    // RUST_BACKTRACE=1, as many shells set it, made deno append a Rust backtrace to its error.
    const bad = await promisify(execFile)("node", [cli, "check", file], {
      env: { ...process.env, RUST_BACKTRACE: "1" },
    }).catch((e: { code: number; stderr: string }) => e);
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toBe(
      `${file}: cell 2 (\`const b = a + 1;\`), line 2:12: SyntaxError: Expression expected\n`,
    );
  });

  it("resolves a relative import from the notebook's directory, as the kernel does, and names errors in that module by file", async () => {
    const dir = tempDir("check-helper");
    writeFileSync(
      path.join(dir, "helper.ts"),
      'export const greeting: string = "hi";\nexport const broken: number = "x";\n',
    );
    const file = writeNotebook(path.join(dir, "own.ipynb"), [
      'import { greeting } from "./helper.ts";\n',
      "const n: number = greeting;\n",
    ]);
    const message = "TS2322: Type 'string' is not assignable to type 'number'.";
    expect(await checkNotebook(file)).toEqual({
      ok: false,
      problems: [{ cell: 2, name: "cell 2 (`const n: number = greeting;`)", line: 1, column: 7, message }],
      output: `${path.join(dir, "helper.ts")}:2:14: ${message}`,
    });
  });

  it("runs as `thinkcells check`, exiting non-zero with the cell and line", async () => {
    const ok = await promisify(execFile)("node", [cli, "check", fixture("check-ok.ipynb")]);
    expect(ok.stdout).toMatch(/check-ok\.ipynb: no type errors/);
    const bad = await promisify(execFile)("node", [cli, "check", fixture("check-type-error.ipynb")]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toContain(
      "check-type-error.ipynb: cell 3 (id c2), line 2:7: TS2322: Type 'number' is not assignable to type 'string'.",
    );
  });

  it("joins code cells in order and remembers where each starts", () => {
    const { code, starts } = joinCells([
      { cell_type: "code", source: ["a\n", "b"] },
      { cell_type: "markdown", source: "text" },
      { cell_type: "code", source: "c\n" },
    ]);
    expect(code).toBe("a\nb\nc\nexport {};\n");
    expect(starts).toEqual([
      { cell: 1, name: "cell 1 (`a`)", line: 1 },
      { cell: 3, name: "cell 3 (`c`)", line: 3 },
    ]);
  });

  it("reads deno's messages without their code frames, with TypeScript's explanation lines", () => {
    const output = [
      "TS2345 [ERROR]: Argument of type '{ y: number; }' is not assignable to parameter of type '{ y: string; }'.",
      "  Types of property 'y' are incompatible.",
      "    Type 'number' is not assignable to type 'string'.",
      "  g(v);",
      "    ^",
      "    at file:///tmp/nb.ts:3:3",
      "",
      "    The expected type comes from property 'y' which is declared here",
      "    function f(a: {y: number}) {}",
      "                   ^",
      "        at file:///tmp/nb.ts:1:16",
      "",
      "error: SyntaxError: Unterminated string constant",
      "  |",
      '7 | let s = "abc',
      "  |         ~~~~",
      "    at file:///tmp/nb.ts:7:9",
      "",
      "error: Type checking failed.",
    ].join("\n");
    expect(parseDenoDiagnostics(output)).toEqual([
      {
        message:
          "TS2345: Argument of type '{ y: number; }' is not assignable to parameter of type '{ y: string; }'.\n" +
          "  Types of property 'y' are incompatible.\n    Type 'number' is not assignable to type 'string'.",
        file: "file:///tmp/nb.ts",
        line: 3,
        column: 3,
      },
      { message: "SyntaxError: Unterminated string constant", file: "file:///tmp/nb.ts", line: 7, column: 9 },
    ]);
    expect(
      describeProblem("nb.ipynb", {
        cell: 4,
        name: "cell 4 (id x)",
        line: 2,
        column: 9,
        message: "SyntaxError: Unterminated string constant",
      }),
    ).toBe("nb.ipynb: cell 4 (id x), line 2:9: SyntaxError: Unterminated string constant");
  });

  it("finds one cell's syntax error with Deno's parser, lines counted within the cell", async () => {
    expect(await findSyntaxError("const x = await Promise.resolve(1);\nx\n")).toBeUndefined();
    expect(await findSyntaxError("const a = 1;\n\nfunction f( {\n")).toMatchObject({
      line: 3,
      column: 11,
      message: expect.stringMatching(/^SyntaxError: /),
    });
  });

  it("explains a file that is not a notebook", async () => {
    const dir = tempDir("check");
    writeFileSync(path.join(dir, "bad.ipynb"), "{ not json");
    await expect(checkNotebook(path.join(dir, "bad.ipynb"))).rejects.toThrow(/bad\.ipynb: not valid JSON/);
    writeFileSync(path.join(dir, "v3.ipynb"), JSON.stringify({ nbformat: 3, nbformat_minor: 0, cells: [] }));
    await expect(checkNotebook(path.join(dir, "v3.ipynb"))).rejects.toThrow(
      /v3\.ipynb: not an nbformat 4 notebook: nbformat/,
    );
    await expect(checkNotebook(path.join(dir, "missing.ipynb"))).rejects.toThrow(
      /missing\.ipynb: cannot read the notebook \(ENOENT\)/,
    );
  });
});
