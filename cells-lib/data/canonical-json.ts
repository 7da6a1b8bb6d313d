/** JSON with object keys sorted, so rows that differ only in key order count as the same row. */
export function canonicalJson(value: unknown): string {
  return String(JSON.stringify(value, (_key, v: unknown) => (isRecord(v) ? sortedKeys(v) : v)));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function sortedKeys(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
