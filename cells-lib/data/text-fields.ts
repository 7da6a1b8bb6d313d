/** A row's text, field by field, for length statistics and previews: top-level strings by key,
 * and chat turns by role ("messages.assistant"), since prompt and response lengths matter apart. */

export function textFields(row: object): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  const add = (field: string, text: string) => {
    const texts = fields.get(field);
    if (texts) texts.push(text);
    else fields.set(field, [text]);
  };
  for (const [key, value] of Object.entries(row)) {
    if (typeof value === "string") add(key, value);
    else if (Array.isArray(value) && value.every(isMessage)) for (const m of value) add(`${key}.${m.role}`, m.content);
  }
  return fields;
}

function isMessage(value: unknown): value is { role: string; content: string } {
  if (typeof value !== "object" || value === null) return false;
  const { role, content } = value as Record<string, unknown>;
  return typeof role === "string" && typeof content === "string";
}
