/** The README's TypeScript blocks as notebook cells, for test/readme.test.ts.
 *
 * Every ```ts block is one code cell, in README order, so a block may use the names an earlier
 * one declared (Stage 2 trains Stage 1's `sft`). Words after `ts` in the fence's info string
 * (which Markdown renderers ignore) say how the test treats the block:
 *   test: name=value …  at test sizes, the value written after `name:`, `name =` or `name(`
 *                       becomes `value`, wherever it occurs in the block; each name must occur;
 *   no-run              type-checked with the others, never executed (CUDA, another machine). */

export interface ReadmeBlock {
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
  run: boolean;
  testValues: Map<string, string>;
}

export function readmeBlocks(markdown: string): ReadmeBlock[] {
  const blocks: ReadmeBlock[] = [];
  let open: { info: string; line: number; lines: string[] } | undefined;
  markdown.split("\n").forEach((text, i) => {
    if (open) {
      if (text.startsWith("```")) {
        if (/^(ts|typescript)$/.test(open.info.split(/\s+/)[0]!))
          blocks.push(block(open.info, open.line, `${open.lines.join("\n")}\n`));
        open = undefined;
      } else open.lines.push(text);
    } else if (text.startsWith("```")) open = { info: text.slice(3).trim(), line: i + 1, lines: [] };
  });
  if (open) throw new Error(`README line ${open.line}: a code block is never closed`);
  return blocks;
}

function block(info: string, line: number, code: string): ReadmeBlock {
  const [, ...words] = info.split(/\s+/);
  const testValues = new Map<string, string>();
  let run = true;
  for (let w = 0; w < words.length; w++) {
    if (words[w] === "no-run") run = false;
    else if (words[w] === "test:") {
      for (; w + 1 < words.length && words[w + 1]!.includes("="); w++) {
        const [name, value] = words[w + 1]!.split("=", 2) as [string, string];
        testValues.set(name, value);
      }
    } else
      throw new Error(`README line ${line}: unknown word "${words[w]}" after ts (known: no-run, test: name=value …)`);
  }
  return { line, code, run, testValues };
}

/** The block's code with its test values in place. */
export function atTestSizes(b: ReadmeBlock): string {
  let code = b.code;
  for (const [name, value] of b.testValues) {
    // `name: 160`, `name = 160` (not `==` or `=>`), `name(20)`: the literal after it, up to a separator.
    const written = new RegExp(`\\b${name}(\\s*(?::|=(?![=>])|\\()\\s*)[^\\s,;)}\\]]+`, "g");
    if (!written.test(code))
      throw new Error(
        `README line ${b.line}: test value ${name}=${value}, but the block writes no value after "${name}"`,
      );
    code = code.replace(written, (_m, between: string) => `${name}${between}${value}`);
  }
  return code;
}

/** An nbformat 4 notebook with one code cell per source, for the thinkcells kernel. */
export function notebookOf(sources: readonly string[]): object {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "thinkcells", display_name: "TypeScript (thinkcells)", language: "typescript" } },
    cells: sources.map((source, i) => ({
      id: `readme-${i + 1}`,
      cell_type: "code",
      source,
      metadata: {},
      outputs: [],
      execution_count: null,
    })),
  };
}
