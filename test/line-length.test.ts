import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { longLines, MAX_LINE } from "../scripts/check-line-length.ts";

describe("the line-length check npm run lint runs", () => {
  const root = mkdtempSync(path.join(tmpdir(), "line-length-"));
  const long = "x".repeat(MAX_LINE + 1);
  const write = (file: string, text: string) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
    return file;
  };

  it("names the file and line of each line over the limit, counting characters, not UTF-16 units", () => {
    const files = [write("a.ts", `ok\n${long}\n`), write("b.py", `${"≤".repeat(MAX_LINE)}\n`)];
    expect(longLines(root, files)).toEqual([`a.ts:2: ${MAX_LINE + 1} characters`]);
  });

  it("exempts Markdown table rows, generated files and other kinds, and reads notebooks' code cells", () => {
    const notebook = {
      cells: [
        { cell_type: "markdown", source: long },
        { cell_type: "code", source: ["a\n", long] },
      ],
    };
    const files = [
      write("README.md", `| ${long} |\n${long}\n`),
      write("package-lock.json", long),
      write("data.csv", long),
      write("nb.ipynb", JSON.stringify(notebook)),
    ];
    expect(longLines(root, files)).toEqual([
      `README.md:2: ${MAX_LINE + 1} characters`,
      `nb.ipynb:code line 2: ${MAX_LINE + 1} characters`,
    ]);
  });
});
