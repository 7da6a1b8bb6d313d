/** Fails when a line of the repository's own text is longer than 160 characters: source, configs,
 * notebook code cells, and Markdown prose (a Markdown table row cannot wrap, so rows are exempt).
 * The formatters wrap code at 120; this catches what they leave (strings, comments, prose).
 * Usage: tsx scripts/check-line-length.ts */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export const MAX_LINE = 160;
const CHECKED = /\.(ts|mts|mjs|js|py|sh|c|h|json|jsonc|toml|ya?ml|md|ipynb)$/;
// Generated or kept byte for byte.
const EXEMPT = [
  /^package-lock\.json$/,
  /^gpu-bridge\/thinkcells_bridge\/protocol\.schema\.json$/,
  /^assets\//,
  /^test\/fixtures\//,
];

/** The lines of a file a reader edits: a notebook's code cells, a Markdown file's non-table lines. */
function checkedLines(file: string, text: string): string[] {
  if (file.endsWith(".ipynb")) {
    const cells = (JSON.parse(text) as { cells: { cell_type: string; source: string | string[] }[] }).cells;
    return cells
      .filter((c) => c.cell_type === "code")
      .flatMap((c) => (Array.isArray(c.source) ? c.source.join("") : c.source).split("\n"));
  }
  const lines = text.split("\n");
  return file.endsWith(".md") ? lines.map((l) => (l.trimStart().startsWith("|") ? "" : l)) : lines;
}

/** "file:line: N characters" for each line over MAX_LINE in the given repository-relative files. */
export function longLines(root: string, files: readonly string[]): string[] {
  const found: string[] = [];
  for (const file of files) {
    if (!CHECKED.test(file) || EXEMPT.some((e) => e.test(file))) continue;
    const lines = checkedLines(file, readFileSync(`${root}/${file}`, "utf8"));
    lines.forEach((line, i) => {
      // Code points, not UTF-16 units: "≤" is one character to a reader.
      const length = [...line].length;
      if (length > MAX_LINE)
        found.push(`${file}:${file.endsWith(".ipynb") ? `code line ${i + 1}` : i + 1}: ${length} characters`);
    });
  }
  return found;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = process.cwd();
  const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { encoding: "utf8" })
    .split("\n")
    .filter((f) => f !== "");
  const found = longLines(root, files);
  if (found.length > 0) {
    console.error(`lines over ${MAX_LINE} characters (wrap them):\n${found.join("\n")}`);
    process.exit(1);
  }
}
