/** `thinkcells check NOTEBOOK.ipynb`: type-checks all code cells together, as the Deno kernel
 * runs them (one module, in order), with the project's deno.json so `thinkcells` resolves.
 * Errors name the cell and the line within it. */
import { execFile } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { stagingDir } from "../cells-lib/util/atomic.ts";
import { cellSource, readNotebook } from "./notebook.ts";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));

export interface CheckProblem {
  /** 1-based index among all cells (markdown included), as a notebook UI counts them. */
  cell: number;
  /** 1-based line within the cell. */
  line: number;
  column: number;
  message: string;
}

export interface CheckResult {
  ok: boolean;
  problems: CheckProblem[];
  /** deno check's own output when it failed for a reason other than type errors. */
  output: string;
}

/** Joins the code cells into one module and remembers where each cell starts. */
export function joinCells(cells: { cell_type: string; source: string | string[] }[]): { code: string; starts: { cell: number; line: number }[] } {
  const parts: string[] = [];
  const starts: { cell: number; line: number }[] = [];
  let line = 1;
  cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    const source = cellSource(cell).replace(/\n?$/, "\n");
    starts.push({ cell: i + 1, line });
    parts.push(source);
    line += source.split("\n").length - 1;
  });
  // A module, so top-level await type-checks as it runs in the kernel.
  return { code: parts.join("") + "export {};\n", starts };
}

/** Maps deno check's "at file:///…/notebook.ts:LINE:COL" locations back to cells. */
function locateProblems(output: string, file: string, starts: { cell: number; line: number }[]): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const lines = output.split("\n");
  let message = "";
  for (const text of lines) {
    const error = /^(TS\d+) \[ERROR\]: (.*)$/.exec(text);
    if (error) message = `${error[1]}: ${error[2]}`;
    const at = /^\s+at (.+):(\d+):(\d+)$/.exec(text);
    if (at && message && fileURLToPath(at[1]!) === file) {
      const line = Number(at[2]);
      const start = [...starts].reverse().find((s) => s.line <= line) ?? starts[0]!;
      problems.push({ cell: start.cell, line: line - start.line + 1, column: Number(at[3]), message });
      message = "";
    }
  }
  return problems;
}

export async function checkNotebook(notebookFile: string): Promise<CheckResult> {
  const notebook = await readNotebook(notebookFile);
  const { code, starts } = joinCells(notebook.cells);
  const dir = await stagingDir(os.tmpdir(), "thinkcells-check");
  const file = path.join(dir, "notebook.ts");
  try {
    await writeFile(file, code);
    const deno = path.join(projectRoot, "node_modules/.bin/deno");
    const output = await new Promise<{ code: number; text: string }>((resolve) => {
      execFile(deno, ["check", "--quiet", "--config", path.join(projectRoot, "deno.json"), file], { env: { ...process.env, NO_COLOR: "1" } }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, text: stdout + stderr });
      });
    });
    if (output.code === 0) return { ok: true, problems: [], output: "" };
    const problems = locateProblems(output.text, file, starts);
    return { ok: false, problems, output: problems.length ? "" : output.text };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
