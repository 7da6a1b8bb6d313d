// The untyped JSON objects that tokenizer files parse into, and the check that
// narrows an unknown value to one.

export type JsonObject = Record<string, unknown>;

export const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);
