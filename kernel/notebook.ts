/** Reading .ipynb files (nbformat 4) with errors that name the file and what is wrong. */
import { readFile } from "node:fs/promises";
import { z } from "zod";

const Source = z.union([z.string(), z.array(z.string())]);

const Cell = z
  .object({
    cell_type: z.enum(["code", "markdown", "raw"]),
    source: Source,
    metadata: z.record(z.string(), z.unknown()).default({}),
  })
  .passthrough();

const Notebook = z
  .object({
    nbformat: z.literal(4),
    nbformat_minor: z.number().int(),
    metadata: z.record(z.string(), z.unknown()).default({}),
    cells: z.array(Cell),
  })
  .passthrough();
export type Notebook = z.infer<typeof Notebook>;

export function cellSource(cell: { source: string | string[] }): string {
  return Array.isArray(cell.source) ? cell.source.join("") : cell.source;
}

/** The first non-blank line of a cell, shortened to fit a message. */
export function firstLine(source: string): string {
  const line = source.split("\n").find((l) => l.trim()) ?? "";
  return line.length > 60 ? `${line.slice(0, 57)}…` : line;
}

/** How messages name a cell: its 1-based index among all cells, as a notebook UI counts them,
 * with its id, or its first line when it has no id (nbformat before 4.5). */
export function cellName(index: number, cell: { id?: unknown; source: string | string[] }): string {
  return typeof cell.id === "string" && cell.id
    ? `cell ${index} (id ${cell.id})`
    : `cell ${index} (\`${firstLine(cellSource(cell))}\`)`;
}

export async function readNotebook(file: string): Promise<Notebook> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new Error(
      `${file}: cannot read the notebook (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const parsed = Notebook.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${file}: not an nbformat 4 notebook: ${issue.path.join(".") || "(top level)"}: ${issue.message}`);
  }
  return parsed.data;
}
