/** Encoding and decoding of bridge frames (layout: protocol.ts). */
import { Buffer } from "node:buffer";
import type { TensorRef, WireDtype } from "./protocol.ts";

export type TypedArrayOf<D extends WireDtype> = D extends "int32"
  ? Int32Array
  : D extends "int64"
    ? BigInt64Array
    : Float32Array;

/** A typed array with a shape: how arrays cross the bridge without per-element JSON. */
export class Tensor<D extends WireDtype = WireDtype> {
  constructor(
    readonly dtype: D,
    readonly shape: number[],
    readonly data: TypedArrayOf<D>,
  ) {
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new Error(`tensor shape [${shape}] holds ${count} values, data has ${data.length}`);
    }
  }

  static int32(values: ArrayLike<number>, shape = [values.length]): Tensor<"int32"> {
    return new Tensor("int32", shape, Int32Array.from(values));
  }

  static float32(values: ArrayLike<number>, shape = [values.length]): Tensor<"float32"> {
    return new Tensor("float32", shape, Float32Array.from(values));
  }

  /** Row r of a 2-D tensor, as a plain array. */
  row(r: number): number[] {
    const width = this.shape[1] ?? 0;
    return Array.from(this.data.subarray(r * width, (r + 1) * width) as ArrayLike<number>, Number);
  }
}

/** Replaces TensorRef-typed fields with Tensors, recursively (the shape of decoded bodies). */
export type Hydrated<T> = T extends TensorRef
  ? Tensor
  : T extends readonly (infer U)[]
    ? Hydrated<U>[]
    : T extends object
      ? { [K in keyof T]: Hydrated<T[K]> }
      : T;

const ctors = { int32: Int32Array, int64: BigInt64Array, float32: Float32Array } as const;

/** Swaps Tensors in `body` for TensorRefs; returns the wire body and the binary section. */
export function dehydrate(body: unknown): {
  body: unknown;
  buffers: [number, number][];
  blob: Buffer;
} {
  const chunks: Buffer[] = [];
  const buffers: [number, number][] = [];
  let offset = 0;
  const walk = (value: unknown): unknown => {
    if (value instanceof Tensor) {
      const pad = (8 - (offset % 8)) % 8;
      if (pad) chunks.push(Buffer.alloc(pad));
      offset += pad;
      const bytes = Buffer.from(value.data.buffer, value.data.byteOffset, value.data.byteLength);
      chunks.push(bytes);
      buffers.push([offset, bytes.length]);
      offset += bytes.length;
      return { $tensor: buffers.length - 1, dtype: value.dtype, shape: value.shape };
    }
    if (Array.isArray(value)) return value.map(walk);
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    }
    return value;
  };
  const wire = walk(body);
  return { body: wire, buffers, blob: Buffer.concat(chunks) };
}

export function encodeFrame(envelope: Record<string, unknown>, blob: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(envelope), "utf8");
  const head = Buffer.alloc(8);
  head.writeUInt32LE(4 + json.length + blob.length, 0);
  head.writeUInt32LE(json.length, 4);
  return Buffer.concat([head, json, blob]);
}

/** Splits a frame payload (after the length field) into its envelope and binary section. */
export function splitFrame(payload: Buffer): { envelope: unknown; blob: Buffer } {
  const jsonLength = payload.readUInt32LE(0);
  const envelope: unknown = JSON.parse(payload.subarray(4, 4 + jsonLength).toString("utf8"));
  return { envelope, blob: payload.subarray(4 + jsonLength) };
}

/** Replaces TensorRefs in a validated body with Tensors backed by copies of their bytes. */
export function hydrate(value: unknown, buffers: [number, number][], blob: Buffer): unknown {
  if (Array.isArray(value)) return value.map((v) => hydrate(v, buffers, blob));
  if (value !== null && typeof value === "object") {
    const ref = value as Partial<TensorRef>;
    if (typeof ref.$tensor === "number" && ref.dtype && ref.shape) {
      const span = buffers[ref.$tensor];
      if (!span) throw new Error(`response tensor ${ref.$tensor} has no buffer`);
      const [offset, length] = span;
      // Copy into a fresh aligned buffer: typed arrays need element-aligned offsets.
      const bytes = new Uint8Array(length);
      bytes.set(blob.subarray(offset, offset + length));
      const Ctor = ctors[ref.dtype];
      return new Tensor(ref.dtype, ref.shape, new Ctor(bytes.buffer) as TypedArrayOf<typeof ref.dtype>);
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, hydrate(v, buffers, blob)]));
  }
  return value;
}
