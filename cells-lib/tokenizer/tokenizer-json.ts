// The tokenizer.json shape @huggingface/tokenizers reads, and the check that an
// arbitrary object has it, so a bad file fails with its name rather than deep
// inside the library.

import { isObject, type JsonObject } from "./json.ts";

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The parts of a Hugging Face tokenizer.json that @huggingface/tokenizers reads. */
export interface TokenizerJson {
  version?: string;
  added_tokens: AddedTokenJson[];
  normalizer: JsonObject | null;
  pre_tokenizer: JsonObject | null;
  post_processor: JsonObject | null;
  decoder: JsonObject | null;
  model: JsonObject;
}

/** Checks the top-level shape and fills the keys the library insists on being present. */
export function normalizeTokenizerJson(json: JsonObject, source: string): TokenizerJson {
  const model = json.model;
  if (!isObject(model))
    throw new Error(`${source}: "model" must be an object (the tokenizer model: BPE, Unigram, WordPiece)`);
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${source}: "added_tokens" must be an array`);
  added.forEach((t: unknown, i) => {
    if (
      !isObject(t) ||
      typeof t.content !== "string" ||
      typeof t.id !== "number" ||
      !Number.isInteger(t.id) ||
      t.id < 0
    ) {
      throw new Error(`${source}: added_tokens[${i}] must have a string "content" and a non-negative integer "id"`);
    }
  });
  const part = (key: string): JsonObject | null => {
    const value = json[key] ?? null;
    if (value !== null && !isObject(value)) throw new Error(`${source}: "${key}" must be an object or null`);
    return value;
  };
  return {
    ...(typeof json.version === "string" ? { version: json.version } : {}),
    added_tokens: added as AddedTokenJson[],
    normalizer: part("normalizer"),
    pre_tokenizer: part("pre_tokenizer"),
    post_processor: part("post_processor"),
    decoder: part("decoder"),
    model,
  };
}
