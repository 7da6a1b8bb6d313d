/** Converts values to what JSON (and so a Jupyter message) can hold, without surprises:
 * JSON.stringify would turn a Float32Array into {"0": …} and NaN into null silently. */
export function toPlainJson(value: unknown, seen: Set<object> = new Set()): unknown {
  if (typeof value === "number") return Number.isFinite(value) ? value : null; // a gap in a plotly line
  if (typeof value === "bigint") return Number(value);
  if (value === null || typeof value !== "object")
    return typeof value === "function" || typeof value === "symbol" ? undefined : value;
  if (value instanceof Date) return value.toISOString();
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return Array.from(value as unknown as ArrayLike<number | bigint>, (x) => toPlainJson(x));
  }
  if (seen.has(value)) throw new TypeError("the value contains a cycle and cannot be converted to JSON");
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((x) => toPlainJson(x, seen) ?? null);
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const plain = toPlainJson(v, seen);
      if (plain !== undefined) out[k] = plain;
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
