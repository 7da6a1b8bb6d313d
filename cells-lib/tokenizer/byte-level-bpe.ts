// Byte-level BPE tokenizers shipped without a tokenizer.json: the library only
// reads tokenizer.json, so rebuild one from vocab.json + merges.txt and what
// tokenizer_config.json's tokenizer_class implies (split regex, normalizer,
// added tokens, BOS/EOS post-processor).

import { isObject, type JsonObject } from "./json.ts";
import { configTokenString } from "./tokenizer-config.ts";
import type { AddedTokenJson, TokenizerJson } from "./tokenizer-json.ts";

// Qwen2's pre-tokenizer split (from its tokenizer.json). Unlike GPT-2 it takes
// single digits and keeps newlines out of letter runs.
const QWEN2_SPLIT_REGEX = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
// GPT-2's ByteLevel regex. Given as a Split pattern rather than ByteLevel's
// use_regex so the library translates \s to Unicode White_Space like Rust
// does (JS's \s would also match U+FEFF).
const GPT2_SPLIT_REGEX = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

interface ByteLevelFlavor {
  normalizer: JsonObject | null;
  splitRegex: string;
}

// tokenizer_class values we can rebuild from vocab.json + merges.txt.
const BYTE_LEVEL_FLAVORS: Record<string, ByteLevelFlavor> = {
  Qwen2Tokenizer: { normalizer: { type: "NFC" }, splitRegex: QWEN2_SPLIT_REGEX },
  GPT2Tokenizer: { normalizer: null, splitRegex: GPT2_SPLIT_REGEX },
};

/** The tokenizer_class values byteLevelBpeTokenizerJson accepts, for messages. */
export const SUPPORTED_CLASSES = Object.keys(BYTE_LEVEL_FLAVORS).join(", ");

/**
 * Builds the tokenizer.json object for a byte-level BPE tokenizer that ships
 * as vocab.json + merges.txt (what transformers' slow Qwen2Tokenizer and
 * GPT2Tokenizer do in Python).
 */
export function byteLevelBpeTokenizerJson(
  vocabJson: JsonObject,
  mergesText: string,
  tokenizerConfig: JsonObject,
  files: { vocab: string; merges: string; config: string } = {
    vocab: "vocab.json",
    merges: "merges.txt",
    config: "tokenizer_config.json",
  },
): TokenizerJson {
  const rawClass = tokenizerConfig.tokenizer_class;
  if (typeof rawClass !== "string") {
    throw new Error(
      `${files.config}: tokenizer_class must be a string naming the tokenizer ` +
        `(supported without tokenizer.json: ${SUPPORTED_CLASSES})`,
    );
  }
  // The Fast variants share the same vocab/merges semantics.
  const cls = rawClass.replace(/Fast$/, "");
  const flavor = BYTE_LEVEL_FLAVORS[cls];
  if (flavor === undefined) {
    throw new Error(
      `${files.config}: tokenizer_class "${rawClass}" cannot be built from vocab.json + merges.txt ` +
        `(supported: ${SUPPORTED_CLASSES}); provide a tokenizer.json instead`,
    );
  }

  const vocab: Record<string, number> = {};
  for (const [token, id] of Object.entries(vocabJson)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new Error(
        `${files.vocab}: id of token ${JSON.stringify(token)} must be a non-negative integer, got ${JSON.stringify(id)}`,
      );
    }
    vocab[token] = id;
  }

  const merges = parseMerges(mergesText, files.merges);
  const addedTokens = addedTokensFromConfig(tokenizerConfig, vocab, files);

  const prefixSpace = tokenizerConfig.add_prefix_space === true;
  const specialTemplate = bosEosTemplate(tokenizerConfig, addedTokens, vocab, files.config);

  return {
    added_tokens: addedTokens,
    normalizer: flavor.normalizer,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: flavor.splitRegex }, behavior: "Isolated", invert: false },
        // The split above already did the regex work; ByteLevel only maps bytes to symbols.
        { type: "ByteLevel", add_prefix_space: prefixSpace, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: specialTemplate,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: configTokenString(tokenizerConfig, "unk_token", files.config) ?? null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

function parseMerges(text: string, path: string): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    // Byte-level symbols never contain a raw "\r", so stripping it only undoes CRLF line ends.
    const line = (lines[i] ?? "").replace(/\r$/, "");
    if (line === "") continue;
    // Only a first line can be the "#version: 0.2" header; "# #" later is a real merge.
    if (i === 0 && line.startsWith("#version")) continue;
    const parts = line.split(" ");
    const [left, right] = parts;
    if (parts.length !== 2 || !left || !right) {
      throw new Error(`${path}:${i + 1}: expected two space-separated symbols, got ${JSON.stringify(line)}`);
    }
    merges.push([left, right]);
  }
  return merges;
}

function addedTokensFromConfig(
  config: JsonObject,
  vocab: Record<string, number>,
  files: { config: string },
): AddedTokenJson[] {
  const added: AddedTokenJson[] = [];
  const decoder = config.added_tokens_decoder;
  if (decoder !== undefined) {
    if (!isObject(decoder)) {
      throw new Error(`${files.config}: added_tokens_decoder must be an object mapping ids to tokens`);
    }
    for (const [key, entry] of Object.entries(decoder)) {
      const id = Number(key);
      const field = `added_tokens_decoder["${key}"]`;
      if (!Number.isInteger(id) || id < 0) {
        throw new Error(`${files.config}: ${field}: key must be a non-negative integer id`);
      }
      if (!isObject(entry) || typeof entry.content !== "string") {
        throw new Error(`${files.config}: ${field} must be an object with a string "content"`);
      }
      const flag = (name: string, fallback: boolean): boolean => {
        const value = entry[name];
        if (value === undefined) return fallback;
        if (typeof value !== "boolean") throw new Error(`${files.config}: ${field}.${name} must be a boolean`);
        return value;
      };
      const special = flag("special", false);
      added.push({
        id,
        content: entry.content,
        single_word: flag("single_word", false),
        lstrip: flag("lstrip", false),
        rstrip: flag("rstrip", false),
        normalized: flag("normalized", !special),
        special,
      });
    }
  }
  // Older configs list bos/eos/... only by name; transformers registers those
  // as special added tokens, so do the same when they are in the vocabulary.
  const named = ["bos_token", "eos_token", "unk_token", "pad_token"].map(
    (key) => [key, configTokenString(config, key, files.config)] as const,
  );
  const extra = config.additional_special_tokens;
  if (Array.isArray(extra)) {
    extra.forEach((token, i) => {
      const value =
        typeof token === "string"
          ? token
          : isObject(token) && typeof token.content === "string"
            ? token.content
            : undefined;
      if (value === undefined) {
        throw new Error(`${files.config}: additional_special_tokens[${i}] must be a string or {content: string}`);
      }
      named.push([`additional_special_tokens[${i}]`, value]);
    });
  }
  for (const [key, content] of named) {
    if (content === undefined || added.some((t) => t.content === content)) continue;
    const id = vocab[content];
    if (id === undefined) {
      throw new Error(
        `${files.config}: ${key} ${JSON.stringify(content)} is neither in vocab.json nor in added_tokens_decoder`,
      );
    }
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  return added.sort((a, b) => a.id - b.id);
}

// Slow GPT-2 style tokenizers add BOS/EOS themselves when add_bos_token /
// add_eos_token are set; express that as the post-processor tokenizer.json would have.
function bosEosTemplate(
  config: JsonObject,
  added: AddedTokenJson[],
  vocab: Record<string, number>,
  configPath: string,
): JsonObject | null {
  const parts: JsonObject[] = [];
  const specials: JsonObject = {};
  const add = (flag: string, key: string, where: "start" | "end"): void => {
    if (config[flag] !== true) return;
    const token = configTokenString(config, key, configPath);
    if (token === undefined) throw new Error(`${configPath}: ${flag} is true but ${key} is not set`);
    const id = added.find((t) => t.content === token)?.id ?? vocab[token];
    if (id === undefined) throw new Error(`${configPath}: ${key} ${JSON.stringify(token)} is not in the vocabulary`);
    const item = { SpecialToken: { id: token, type_id: 0 } };
    if (where === "start") parts.unshift(item);
    else parts.push(item);
    specials[token] = { id: token, ids: [id], tokens: [token] };
  };
  parts.push({ Sequence: { id: "A", type_id: 0 } });
  add("add_bos_token", "bos_token", "start");
  add("add_eos_token", "eos_token", "end");
  if (parts.length === 1) return null;
  const pair = [...parts, ...parts.map((p) => ("Sequence" in p ? { Sequence: { id: "B", type_id: 1 } } : p))];
  return { type: "TemplateProcessing", single: parts, pair, special_tokens: specials };
}
