/** `thinkcells check NOTEBOOK.ipynb`: type-checks all code cells together, as the Deno kernel
 * runs them (one module, in order), with the project's deno.json so `thinkcells` resolves, and
 * relative imports resolved from the notebook's directory, as in the kernel.
 * Errors, type and syntax alike, name the cell and the line within it. */
import { readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { stagingDir } from "../cells-lib/util/atomic.ts";
import { parseDenoDiagnostics, runDeno } from "./deno-diagnostics.ts";
import { cellName, cellSource, readNotebook } from "./notebook.ts";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));

export interface CheckProblem {
  /** 1-based index among all cells (markdown included), as a notebook UI counts them. */
  cell: number;
  /** The cell as messages name it: "cell 3 (id c2)", or its first line when it has no id. */
  name: string;
  /** 1-based line within the cell. */
  line: number;
  column: number;
  message: string;
}

export interface CheckResult {
  ok: boolean;
  problems: CheckProblem[];
  /** Errors located outside the cells (in a module they import), or deno check's own output
   * when it failed for a reason other than located errors. */
  output: string;
}

interface CellStart {
  cell: number;
  name: string;
  /** The cell's first line in the joined module. */
  line: number;
}

/** Joins the code cells into one module and remembers where each cell starts. */
export function joinCells(cells: { cell_type: string; source: string | string[]; id?: unknown }[]): {
  code: string;
  starts: CellStart[];
} {
  const parts: string[] = [];
  const starts: CellStart[] = [];
  let line = 1;
  cells.forEach((cell, i) => {
    if (cell.cell_type !== "code") return;
    const source = cellSource(cell).replace(/\n?$/, "\n");
    starts.push({ cell: i + 1, name: cellName(i + 1, cell), line });
    parts.push(source);
    line += source.split("\n").length - 1;
  });
  // A module, so top-level await type-checks as it runs in the kernel.
  return { code: `${parts.join("")}export {};\n`, starts };
}

/** The project's import map, plus the joined module's directory mapped to the notebook's, so
 * that `./helpers.ts` means the module beside the notebook. deno check's --import-map replaces
 * the config's imports rather than adding to them. */
async function importMap(dir: string, notebookDir: string): Promise<string> {
  const config = path.join(projectRoot, "deno.json");
  const { imports } = JSON.parse(await readFile(config, "utf8")) as { imports: Record<string, string> };
  const mapped = Object.fromEntries(
    Object.entries(imports).map(([name, target]) => [name, new URL(target, pathToFileURL(config)).href]),
  );
  mapped[pathToFileURL(path.join(dir, "/")).href] = pathToFileURL(path.join(notebookDir, "/")).href;
  return JSON.stringify({ imports: mapped });
}

/** Maps deno check's locations in the joined module back to cells; errors elsewhere (in a
 * module the cells import) keep their own file. */
function locateProblems(
  output: string,
  file: string,
  starts: CellStart[],
): { problems: CheckProblem[]; elsewhere: string[] } {
  const problems: CheckProblem[] = [];
  const elsewhere: string[] = [];
  for (const { file: url, line, column, message } of parseDenoDiagnostics(output)) {
    const where = url.startsWith("file:") ? fileURLToPath(url) : url;
    if (where !== file) {
      elsewhere.push(`${where}:${line}:${column}: ${message}`);
      continue;
    }
    const start = [...starts].reverse().find((s) => s.line <= line) ?? starts[0]!;
    problems.push({ cell: start.cell, name: start.name, line: line - start.line + 1, column, message });
  }
  return { problems, elsewhere };
}

/** One line for a problem: the notebook, the cell, the line and column in it, the message. */
export function describeProblem(file: string, problem: CheckProblem): string {
  return `${file}: ${problem.name}, line ${problem.line}:${problem.column}: ${problem.message}`;
}

export async function checkNotebook(notebookFile: string): Promise<CheckResult> {
  const notebook = await readNotebook(notebookFile);
  const { code, starts } = joinCells(notebook.cells);
  const dir = await stagingDir(os.tmpdir(), "thinkcells-check");
  const file = path.join(dir, "notebook.ts");
  try {
    const map = path.join(dir, "import-map.json");
    await writeFile(file, code);
    await writeFile(map, await importMap(dir, path.dirname(path.resolve(notebookFile))));
    const output = await runDeno([
      "check",
      "--quiet",
      "--config",
      path.join(projectRoot, "deno.json"),
      "--import-map",
      map,
      file,
    ]);
    if (output.code === 0) return { ok: true, problems: [], output: "" };
    const { problems, elsewhere } = locateProblems(output.text, file, starts);
    return { ok: false, problems, output: problems.length || elsewhere.length ? elsewhere.join("\n") : output.text };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
