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

export async function readNotebook(file: string): Promise<Notebook> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new Error(`${file}: cannot read the notebook (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
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
