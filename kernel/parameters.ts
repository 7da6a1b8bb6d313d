/** Papermill-style parameters for TypeScript notebooks: the cell tagged `parameters` declares
 * defaults; `thinkcells run -p name=value` injects `const` declarations in a cell tagged
 * `injected-parameters` right after it (the kernel lets a later cell redeclare a const). */
import { cellSource } from "./notebook.ts";

export interface DeclaredParameter {
  name: string;
  /** The declaration's type annotation, if it has one (`const lr: number = 1e-4`). */
  type?: string;
  /** What the default's literal is: how `-p` text for it is read. */
  kind: "string" | "number" | "boolean" | "json";
  line: number;
}

interface Cell {
  cell_type: string;
  source: string | string[];
  metadata: Record<string, unknown>;
}

const DECLARATION = /^(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*(?::\s*([^=]+?))?\s*=\s*(.*)$/;

function kindOf(init: string): DeclaredParameter["kind"] {
  const value = init
    .trim()
    .replace(/;$/, "")
    .replace(/\s+as\s+const$/, "");
  if (/^["'`]/.test(value)) return "string";
  if (/^[+-]?(\d[\d_]*\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(value)) return "number";
  if (value === "true" || value === "false") return "boolean";
  return "json";
}

export function cellTags(cell: { metadata: Record<string, unknown> }): string[] {
  const tags = cell.metadata.tags;
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === "string") : [];
}

/** Top-level declarations of the parameters cell (one per line, as papermill's convention). */
export function declaredParameters(source: string): DeclaredParameter[] {
  return source.split("\n").flatMap((text, i) => {
    const m = DECLARATION.exec(text);
    if (!m) return [];
    return [{ name: m[1]!, ...(m[2] ? { type: m[2].trim() } : {}), kind: kindOf(m[3]!), line: i + 1 }];
  });
}

/** `name=value` pairs from the command line, in order; a repeated name keeps the last. */
export function parseAssignments(pairs: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new Error(`-p ${pair}: expected name=value`);
    out.set(pair.slice(0, eq).trim(), pair.slice(eq + 1));
  }
  return out;
}

/** The TypeScript literal for `text`, read as the declared default's kind. */
export function parameterLiteral(param: DeclaredParameter, text: string): string {
  const fail = (expected: string): never => {
    throw new Error(
      `-p ${param.name}=${text}: expected ${expected} (the parameters cell's line ${param.line} declares ${param.name} with a ${param.kind} default)`,
    );
  };
  switch (param.kind) {
    case "string":
      return JSON.stringify(text);
    case "number": {
      const n = Number(text);
      if (text.trim() === "" || !Number.isFinite(n)) fail("a number");
      return String(n);
    }
    case "boolean":
      if (text !== "true" && text !== "false") fail("true or false");
      return text;
    case "json":
      try {
        return JSON.stringify(JSON.parse(text));
      } catch {
        return fail("a JSON value");
      }
  }
}

export interface InjectedNotebook<C extends Cell> {
  cells: C[];
  /** Index of the injected cell, or -1 when there were no parameters to inject. */
  injectedAt: number;
}

/** The notebook's cells with the injected-parameters cell in place (replacing an earlier one,
 * as papermill does when a notebook is run twice). */
export function injectParameters<C extends Cell>(
  cells: readonly C[],
  values: ReadonlyMap<string, string>,
  makeCell: (source: string) => C,
  notebookName: string,
): InjectedNotebook<C> {
  const kept = cells.filter((c) => !cellTags(c).includes("injected-parameters"));
  if (values.size === 0) return { cells: kept, injectedAt: -1 };
  const at = kept.findIndex((c) => c.cell_type === "code" && cellTags(c).includes("parameters"));
  if (at < 0)
    throw new Error(
      `${notebookName}: no code cell is tagged "parameters", so -p ${[...values.keys()].join(", ")} cannot be injected`,
    );
  const declared = new Map(declaredParameters(cellSource(kept[at]!)).map((p) => [p.name, p]));
  const lines = ["// Parameters injected by `thinkcells run`."];
  for (const [name, text] of values) {
    const param = declared.get(name);
    if (!param) {
      const known = [...declared.keys()];
      throw new Error(
        `-p ${name}: unknown parameter; the parameters cell (cell ${cells.indexOf(kept[at]!) + 1}) declares ${known.length ? known.join(", ") : "none"}`,
      );
    }
    lines.push(`const ${name}${param.type ? `: ${param.type}` : ""} = ${parameterLiteral(param, text)};`);
  }
  const out = [...kept];
  out.splice(at + 1, 0, makeCell(`${lines.join("\n")}\n`));
  return { cells: out, injectedAt: at + 1 };
}
