/** The folder tree shows the design: imports between folders go one way. Each folder of
 * cells-lib/ is a node, as are kernel/ and cli/; an import from one to another is an edge, and
 * the graph must have no cycle. cells-lib imports neither kernel/ nor cli/, and nothing imports cli/. */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "./helpers.ts";

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["'](\.[^"']+)["']/g;

/** The node a file belongs to: "cells-lib/<folder>" (or "cells-lib" for its top level), "kernel", "cli". */
function nodeOf(file: string): string | undefined {
  const parts = path.relative(repoRoot, file).split(path.sep);
  if (parts[0] === "cells-lib") return parts.length > 2 ? `cells-lib/${parts[1]}` : "cells-lib";
  return parts[0] === "kernel" || parts[0] === "cli" ? parts[0] : undefined;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** node → node it imports → one import that shows it. */
function importGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of ["cells-lib", "kernel", "cli"].flatMap((dir) => sources(path.join(repoRoot, dir)))) {
    const from = nodeOf(file)!;
    for (const [, specifier] of readFileSync(file, "utf8").matchAll(IMPORT)) {
      const to = nodeOf(path.resolve(path.dirname(file), specifier!));
      if (to === undefined || to === from) continue;
      if (!graph.has(from)) graph.set(from, new Map());
      if (!graph.get(from)!.has(to)) graph.get(from)!.set(to, `${path.relative(repoRoot, file)} imports ${specifier}`);
    }
  }
  return graph;
}

/** One cycle through the graph as its edges' example imports, or undefined. */
function findCycle(graph: Map<string, Map<string, string>>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const trail: string[] = [];
  const visit = (node: string): string[] | undefined => {
    state.set(node, "open");
    for (const [next, example] of graph.get(node) ?? []) {
      trail.push(example);
      if (state.get(next) === "open") return [...trail];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
      trail.pop();
    }
    state.set(node, "done");
    return undefined;
  };
  for (const node of graph.keys()) {
    if (!state.has(node)) {
      const found = visit(node);
      if (found) return found;
    }
  }
  return undefined;
}

describe("folders import one way", () => {
  const graph = importGraph();

  it("has no import cycle between folders", () => {
    expect(findCycle(graph)).toBeUndefined();
  });

  it("keeps the library free of the kernel tools and the CLI", () => {
    const library = [...graph].filter(([from]) => from.startsWith("cells-lib"));
    const outward = library.flatMap(([, edges]) =>
      [...edges].filter(([to]) => to === "kernel" || to === "cli").map(([, example]) => example),
    );
    expect(outward).toEqual([]);
    const intoCli = [...graph].flatMap(([, edges]) =>
      [...edges].filter(([to]) => to === "cli").map(([, example]) => example),
    );
    expect(intoCli).toEqual([]);
  });

  it("sees the imports it judges (the check itself works)", () => {
    expect(graph.get("cells-lib/eval")?.has("cells-lib/chat")).toBe(true);
    expect(graph.get("cli")?.has("kernel")).toBe(true);
    expect(
      findCycle(
        new Map([
          ["a", new Map([["b", "a→b"]])],
          ["b", new Map([["a", "b→a"]])],
        ]),
      ),
    ).toEqual(["a→b", "b→a"]);
  });
});
