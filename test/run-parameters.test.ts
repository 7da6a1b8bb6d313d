import { describe, expect, it } from "vitest";
import { declaredParameters, injectParameters, parameterLiteral, parseAssignments } from "../kernel/parameters.ts";

const paramsCell = {
  cell_type: "code",
  source:
    'const steps = 20;\nconst label: string = "base";\nlet lr = 1e-4;\nconst fast = false;\nconst mix = { add: 1 };\n',
  metadata: { tags: ["parameters"] },
};
const cells = [
  { cell_type: "markdown", source: "# t", metadata: {} },
  paramsCell,
  { cell_type: "code", source: "steps", metadata: {} },
];
const make = (source: string) => ({ cell_type: "code", source, metadata: { tags: ["injected-parameters"] } });

describe("parameters", () => {
  it("reads the parameters cell's declarations and their kinds", () => {
    expect(declaredParameters(paramsCell.source)).toEqual([
      { name: "steps", kind: "number", line: 1 },
      { name: "label", type: "string", kind: "string", line: 2 },
      { name: "lr", kind: "number", line: 3 },
      { name: "fast", kind: "boolean", line: 4 },
      { name: "mix", kind: "json", line: 5 },
    ]);
  });

  it("types -p text by the default's kind", () => {
    const [steps, label, , fast, mix] = declaredParameters(paramsCell.source);
    expect(parameterLiteral(steps!, "40")).toBe("40");
    expect(parameterLiteral(label!, "123")).toBe('"123"');
    expect(parameterLiteral(label!, 'say "hi"')).toBe('"say \\"hi\\""');
    expect(parameterLiteral(fast!, "true")).toBe("true");
    expect(parameterLiteral(mix!, '{"add": 2, "mul": [1]}')).toBe('{"add":2,"mul":[1]}');
    expect(() => parameterLiteral(steps!, "many")).toThrow(
      "-p steps=many: expected a number (the parameters cell's line 1 declares steps with a number default)",
    );
    expect(() => parameterLiteral(fast!, "yes")).toThrow("expected true or false");
    expect(() => parameterLiteral(mix!, "{add")).toThrow("expected a JSON value");
  });

  it("injects typed const declarations right after the parameters cell", () => {
    const { cells: out, injectedAt } = injectParameters(
      cells,
      parseAssignments(["steps=3", "label=cli", "steps=5"]),
      make,
      "nb.ipynb",
    );
    expect(injectedAt).toBe(2);
    expect(out.map((c) => c.source)).toEqual([
      "# t",
      paramsCell.source,
      '// Parameters injected by `thinkcells run`.\nconst steps = 5;\nconst label: string = "cli";\n',
      "steps",
    ]);
    // Running an executed notebook again replaces its injected cell instead of adding another.
    const again = injectParameters(out, new Map([["fast", "true"]]), make, "nb.ipynb");
    expect(
      again.cells.filter((c) => (c.metadata as { tags?: string[] }).tags?.includes("injected-parameters")),
    ).toHaveLength(1);
    expect(again.cells[2]!.source).toContain("const fast = true;");
  });

  it("names the known parameters when given an unknown one", () => {
    expect(() => injectParameters(cells, new Map([["stpes", "3"]]), make, "nb.ipynb")).toThrow(
      "-p stpes: unknown parameter; the parameters cell (cell 2) declares steps, label, lr, fast, mix",
    );
    expect(() => injectParameters([cells[2]!], new Map([["steps", "3"]]), make, "nb.ipynb")).toThrow(
      'nb.ipynb: no code cell is tagged "parameters"',
    );
    expect(() => parseAssignments(["steps"])).toThrow("-p steps: expected name=value");
  });
});
