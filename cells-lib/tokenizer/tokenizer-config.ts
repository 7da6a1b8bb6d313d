// Fields of tokenizer_config.json that several places read and that come in
// more than one shape.

import { isObject, type JsonObject } from "./json.ts";

/**
 * Reads a token field of tokenizer_config.json, which may be a string, null,
 * or an AddedToken-like object `{content: "..."}`. Returns undefined for null/absent.
 */
export function configTokenString(config: JsonObject, key: string, source: string): string | undefined {
  const value = config[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.content === "string") return value.content;
  throw new Error(`${source}: ${key} must be a string, null or {content: string}, got ${JSON.stringify(value)}`);
}

export function pickChatTemplate(config: JsonObject, source: string): string | undefined {
  const value = config.chat_template;
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  // Multi-template configs: a list of {name, template} or a name → template map; "default" is the chat one.
  if (Array.isArray(value)) {
    const entry: unknown = value.find((t: unknown) => isObject(t) && t.name === "default");
    if (isObject(entry) && typeof entry.template === "string") return entry.template;
    return undefined;
  }
  if (isObject(value)) return typeof value.default === "string" ? value.default : undefined;
  throw new Error(`${source}: chat_template must be a string or a list of {name, template}`);
}
