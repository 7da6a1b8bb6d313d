/** Issue 17, item 3: errors as data. OptionsError carries zod's issues and one formatter renders
 * them; BridgeError.kind is typed from the error kinds the protocol declares once. */
import { readFileSync } from "node:fs";
import { describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { BridgeError, type BridgeErrorKind } from "../cells-lib/bridge/errors.ts";
import { ERROR_KINDS, type ErrorKind, REMOTE_ERROR_KINDS, ResponseEnvelope } from "../cells-lib/bridge/protocol.ts";
import { parseRecord } from "../cells-lib/checkpoints/record.ts";
import { formatIssues, OptionsError, parseOptions } from "../cells-lib/util/options.ts";
import { schemaPath } from "../scripts/gen-protocol-schema.ts";

const Options = z
  .object({
    lr: z.number().positive(),
    style: z.enum(["think", "xml"]).default("think"),
    nested: z.object({ steps: z.number().int() }).strict().optional(),
  })
  .strict();

function failure(value: unknown): OptionsError {
  try {
    parseOptions(Options, value, "demo");
  } catch (err) {
    if (err instanceof OptionsError) return err;
    throw err;
  }
  throw new Error("expected an OptionsError");
}

describe("OptionsError", () => {
  it("carries the cell and zod's issues: path, code, expected, received", () => {
    const err = failure({ lr: "fast", style: "yaml", nested: { steps: 1.5 } });
    expect(err.where).toBe("demo");
    expect(err.issues).toEqual([
      { path: ["lr"], code: "invalid_type", message: expect.any(String), expected: "number", received: '"fast"' },
      {
        path: ["style"],
        code: "invalid_value",
        message: expect.any(String),
        expected: 'one of "think", "xml"',
        received: '"yaml"',
      },
      {
        path: ["nested", "steps"],
        code: "invalid_type",
        message: expect.any(String),
        expected: "int",
        received: "1.5",
      },
    ]);
    expect(failure({}).issues).toEqual([
      { path: ["lr"], code: "invalid_type", message: expect.any(String), expected: "number", received: "nothing" },
    ]);
    expect(failure({ lr: -1 }).issues[0]).toMatchObject({
      path: ["lr"],
      code: "too_small",
      expected: "number > 0",
      received: "-1",
    });
  });

  it("makes one issue per unknown option, and renders them together", () => {
    const err = failure({ lr: 1, temprature: 1, nested: { steps: 1, step: 2 }, extra: [1] });
    expect(err.issues.map((i) => [i.code, i.path, i.received])).toEqual([
      ["unrecognized_keys", ["nested", "step"], "2"],
      ["unrecognized_keys", ["temprature"], "1"],
      ["unrecognized_keys", ["extra"], "an array"],
    ]);
    expect(err.message).toBe('demo: unknown option "step"; unknown options "temprature", "extra"');
  });

  it("renders its message with the one formatter", () => {
    const err = failure({ lr: "fast" });
    expect(err.message).toBe(`demo: ${formatIssues(err.issues)}`);
    expect(err.message).toMatch(/^demo: option "lr": Invalid input: expected number/);
    expect(formatIssues(err.issues, "field")).toMatch(/^"lr" Invalid input: expected number/);
    expect(formatIssues([{ path: [], code: "custom", message: "expected an object" }])).toBe(
      "options: expected an object",
    );
  });

  it("can still be thrown by hand, with a message and no issues", () => {
    const err = new OptionsError('grpo: option "beta" needs LoRA adapters');
    expect(err.message).toBe('grpo: option "beta" needs LoRA adapters');
    expect(err.where).toBe("grpo");
    expect(err.issues).toEqual([]);
    expect(err).toBeInstanceOf(Error);
  });
});

describe("the one formatter renders every parse failure", () => {
  it("names each field of a damaged checkpoint commit record", () => {
    const record = JSON.stringify({ createdAt: 7, files: "none" });
    expect(() => parseRecord(record, "ckpt/record.json")).toThrow(
      /^ckpt\/record\.json is not a checkpoint commit record: "[\w.]+" .*; "[\w.]+" /,
    );
  });
});

describe("BridgeError.kind", () => {
  it("is typed from the kinds the protocol declares", () => {
    expectTypeOf<BridgeErrorKind>().toEqualTypeOf<ErrorKind>();
    expectTypeOf<BridgeError["kind"]>().toEqualTypeOf<(typeof ERROR_KINDS)[number]>();
    expectTypeOf<"bad_input">().toMatchTypeOf<BridgeError["kind"]>();
    expectTypeOf<"bogus">().not.toMatchTypeOf<BridgeError["kind"]>();
    expect(new BridgeError("crashed", "sample", "gone").kind).toBe("crashed");
    expect(ERROR_KINDS).toEqual(expect.arrayContaining([...REMOTE_ERROR_KINDS]));
  });

  it("reads a failed response's error type, and an unknown one as internal", () => {
    const failed = (type: string) =>
      ResponseEnvelope.parse({ id: 1, ok: false, op: "sample", error: { type, message: "m", traceback: "" } });
    const known = failed("bad_input");
    expect(!known.ok && known.error.type).toBe("bad_input");
    const unknown = failed("from_a_newer_bridge");
    expect(!unknown.ok && unknown.error.type).toBe("internal");
  });

  it("covers every kind the Python bridge sends, through the generated schema", () => {
    const schema = JSON.parse(readFileSync(schemaPath, "utf8")) as { error_kinds: string[] };
    expect(schema.error_kinds).toEqual([...REMOTE_ERROR_KINDS]);
    const server = readFileSync(new URL("../gpu-bridge/thinkcells_bridge/server.py", import.meta.url), "utf8");
    const errorType = /^def error_type\(.*?(?=^\S)/ms.exec(server)?.[0] ?? "";
    const sent = [...errorType.matchAll(/return error_kind\("(\w+)"\)/g)].map((m) => m[1]);
    expect(sent.length).toBeGreaterThan(0);
    // error_type returns only error_kind(...) calls, which check the name against the schema.
    expect(errorType).not.toMatch(/return\s+["']/);
    for (const kind of sent) expect(REMOTE_ERROR_KINDS).toContain(kind);
    expect(server).toMatch(/"type": error_type\(exc\)/);
  });
});
