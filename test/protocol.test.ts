import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { dehydrate, encodeFrame, hydrate, splitFrame, Tensor } from "../cells-lib/bridge/frames.ts";
import { ops } from "../cells-lib/bridge/protocol.ts";
import { renderSchema, schemaPath } from "../scripts/gen-protocol-schema.ts";

describe("the protocol declaration", () => {
  it("matches the JSON Schema the Python bridge validates against (run npm run gen:protocol)", () => {
    expect(readFileSync(schemaPath, "utf8")).toBe(renderSchema());
  });

  it("rejects unknown fields and out-of-range values in requests", () => {
    expect(ops.sample.request.safeParse({ bogus: 1 }).success).toBe(false);
    expect(ops.load_model.request.safeParse({ name: "m", path: "/x", dtype: "float64" }).success).toBe(false);
  });
});

describe("frames", () => {
  it("carry typed arrays as aligned binary, not JSON numbers", () => {
    const ids = Tensor.int32([1, -2, 3], [3]);
    const probs = Tensor.float32([0.5, 0.25, 0.125, 1.5], [2, 2]);
    const wire = dehydrate({ a: ids, nested: { b: probs }, list: [ids] });
    expect(wire.body).toEqual({
      a: { $tensor: 0, dtype: "int32", shape: [3] },
      nested: { b: { $tensor: 1, dtype: "float32", shape: [2, 2] } },
      list: [{ $tensor: 2, dtype: "int32", shape: [3] }],
    });
    expect(wire.buffers).toEqual([
      [0, 12],
      [16, 16],
      [32, 12],
    ]);
    const frame = encodeFrame({ id: 1, body: wire.body, buffers: wire.buffers }, wire.blob);
    expect(frame.readUInt32LE(0)).toBe(frame.length - 4);
    const { envelope, blob } = splitFrame(frame.subarray(4));
    const back = hydrate((envelope as { body: unknown }).body, wire.buffers, blob) as {
      a: Tensor;
      nested: { b: Tensor };
    };
    expect(Array.from(back.a.data as Int32Array)).toEqual([1, -2, 3]);
    expect(back.nested.b.shape).toEqual([2, 2]);
    expect(back.nested.b.row(1)).toEqual([0.125, 1.5]);
  });

  it("refuse a tensor whose shape does not match its data", () => {
    expect(() => new Tensor("int32", [2, 2], new Int32Array(3))).toThrow(/shape \[2,2\] holds 4 values, data has 3/);
  });
});
