// Tokenizer loading and the Tokenizer wrapper used by notebooks.
//
// Tokenization itself is done by @huggingface/tokenizers (pure JS, so it runs
// unchanged under Node and Deno). This module's job is getting a Hugging Face
// tokenizer directory into the shape that library wants, with errors that name
// the file and field at fault, plus the bits the library does not do: special
// token ids, chat templates (@huggingface/jinja) and streaming decode.

import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

type JsonObject = Record<string, unknown>;

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

export interface ChatMessage {
  role: string;
  content: string;
}

export interface EncodeOptions {
  /** Add the tokens the post-processor adds (e.g. BOS for Llama). Default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS/EOS/ChatML markers...) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the prompt that opens the assistant's turn. Default false. */
  addGenerationPrompt?: boolean;
  /** Jinja template to use instead of the tokenizer's own. */
  template?: string;
  /** Extra template variables (e.g. `tools`). They cannot override the variables set here. */
  extra?: Record<string, unknown>;
}

export interface TokenizerFromJsonOptions {
  /** Contents of the model's config.json; fallback for bos/eos/pad token ids. */
  modelConfig?: JsonObject;
  /** Chat template that takes precedence over tokenizer_config's (e.g. from chat_template.jinja). */
  chatTemplate?: string;
  /** Where the tokenizer came from; used in error messages. */
  source?: string;
}

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

const SUPPORTED_CLASSES = Object.keys(BYTE_LEVEL_FLAVORS).join(", ");

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const isNotFound = (err: unknown): boolean =>
  isObject(err) && (err.code === "ENOENT" || err.code === "ENOTDIR");

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

async function readJsonObject(path: string): Promise<JsonObject> {
  const text = await readText(path);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: invalid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (!isObject(value)) {
    const got = Array.isArray(value) ? "an array" : value === null ? "null" : typeof value;
    throw new Error(`${path}: expected a JSON object at the top level, got ${got}`);
  }
  return value;
}

async function readOptionalJson(path: string): Promise<JsonObject | undefined> {
  return (await fileExists(path)) ? readJsonObject(path) : undefined;
}

/**
 * Loads a Hugging Face tokenizer directory: tokenizer.json, or (for byte-level
 * BPE tokenizers shipped without one) vocab.json + merges.txt, plus the optional
 * tokenizer_config.json, config.json and chat_template.jinja.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  let dirStat;
  try {
    dirStat = await stat(dir);
  } catch (err) {
    if (isNotFound(err)) throw new Error(`loadTokenizer: directory ${dir} does not exist`);
    throw new Error(`loadTokenizer: cannot access ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  if (!dirStat.isDirectory()) throw new Error(`loadTokenizer: ${dir} is not a directory`);

  const configPath = join(dir, "tokenizer_config.json");
  const tokenizerConfig = await readOptionalJson(configPath);
  const modelConfig = await readOptionalJson(join(dir, "config.json"));
  const templatePath = join(dir, "chat_template.jinja");
  const chatTemplate = (await fileExists(templatePath)) ? await readText(templatePath) : undefined;

  const tokenizerJsonPath = join(dir, "tokenizer.json");
  const vocabPath = join(dir, "vocab.json");
  const mergesPath = join(dir, "merges.txt");
  let tokenizerJson: TokenizerJson | JsonObject;
  let source: string;
  if (await fileExists(tokenizerJsonPath)) {
    tokenizerJson = await readJsonObject(tokenizerJsonPath);
    source = tokenizerJsonPath;
  } else {
    const hasVocab = await fileExists(vocabPath);
    const hasMerges = await fileExists(mergesPath);
    if (!hasVocab || !hasMerges) {
      const found = (await readdir(dir)).sort().join(", ") || "nothing";
      const missing = hasVocab ? "merges.txt is missing" : hasMerges ? "vocab.json is missing" : "";
      throw new Error(
        `loadTokenizer: ${dir} has no tokenizer.json and no vocab.json + merges.txt` +
          (missing ? ` (${missing})` : "") +
          `; found: ${found}`,
      );
    }
    if (tokenizerConfig === undefined) {
      throw new Error(
        `loadTokenizer: ${dir} has vocab.json + merges.txt but no tokenizer_config.json; ` +
          `it is needed for tokenizer_class (supported: ${SUPPORTED_CLASSES})`,
      );
    }
    tokenizerJson = byteLevelBpeTokenizerJson(
      await readJsonObject(vocabPath),
      await readText(mergesPath),
      tokenizerConfig,
      { vocab: vocabPath, merges: mergesPath, config: configPath },
    );
    source = dir;
  }
  return tokenizerFromJson(tokenizerJson, tokenizerConfig ?? {}, {
    modelConfig,
    chatTemplate,
    source,
  });
}

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
      throw new Error(`${files.vocab}: id of token ${JSON.stringify(token)} must be a non-negative integer, got ${JSON.stringify(id)}`);
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
  const named = ["bos_token", "eos_token", "unk_token", "pad_token"].map((key) => [key, configTokenString(config, key, files.config)] as const);
  const extra = config.additional_special_tokens;
  if (Array.isArray(extra)) {
    extra.forEach((token, i) => {
      const value = typeof token === "string" ? token : isObject(token) && typeof token.content === "string" ? token.content : undefined;
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

/**
 * Reads a token field of tokenizer_config.json, which may be a string, null,
 * or an AddedToken-like object `{content: "..."}`. Returns undefined for null/absent.
 */
function configTokenString(config: JsonObject, key: string, source: string): string | undefined {
  const value = config[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (isObject(value) && typeof value.content === "string") return value.content;
  throw new Error(`${source}: ${key} must be a string, null or {content: string}, got ${JSON.stringify(value)}`);
}

/** Checks the top-level shape and fills the keys the library insists on being present. */
function normalizeTokenizerJson(json: JsonObject, source: string): TokenizerJson {
  const model = json.model;
  if (!isObject(model)) throw new Error(`${source}: "model" must be an object (the tokenizer model: BPE, Unigram, WordPiece)`);
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new Error(`${source}: "added_tokens" must be an array`);
  added.forEach((t: unknown, i) => {
    if (!isObject(t) || typeof t.content !== "string" || typeof t.id !== "number" || !Number.isInteger(t.id) || t.id < 0) {
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

function pickChatTemplate(config: JsonObject, source: string): string | undefined {
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

/**
 * Builds a Tokenizer from an in-memory tokenizer.json object and
 * tokenizer_config.json object (e.g. the output of llama2cTokenizerJson).
 */
export function tokenizerFromJson(
  tokenizerJson: TokenizerJson | JsonObject,
  tokenizerConfig: JsonObject = {},
  options: TokenizerFromJsonOptions = {},
): Tokenizer {
  const source = options.source ?? "tokenizer.json";
  const json = normalizeTokenizerJson(tokenizerJson as JsonObject, source);
  // The library defaults clean_up_tokenization_spaces to true, which would turn
  // "a ." into "a." and break decode(encode(x)) === x; only honour an explicit true.
  const libConfig = {
    ...tokenizerConfig,
    clean_up_tokenization_spaces: tokenizerConfig.clean_up_tokenization_spaces === true,
  };
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, libConfig);
  } catch (err) {
    throw new Error(`${source}: cannot build tokenizer: ${errorMessage(err)}`, { cause: err });
  }
  return new Tokenizer(hf, tokenizerConfig, options.modelConfig, options.chatTemplate ?? pickChatTemplate(tokenizerConfig, source), source);
}

type SpecialRole = "bos" | "eos" | "pad" | "unk";

/** A loaded tokenizer. Construct with loadTokenizer() or tokenizerFromJson(). */
export class Tokenizer {
  /** Number of ids: highest id in the vocabulary or added tokens, plus one. */
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly padTokenId: number | undefined;
  readonly unkTokenId: number | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  /** Ids of added tokens marked special, ascending. */
  readonly specialTokenIds: number[];
  readonly chatTemplate: string | undefined;
  /** Directory or file the tokenizer was loaded from (for messages). */
  readonly source: string;

  private readonly hf: HfTokenizer;
  private readonly templates = new Map<string, Template>();

  constructor(
    hf: HfTokenizer,
    tokenizerConfig: JsonObject,
    modelConfig: JsonObject | undefined,
    chatTemplate: string | undefined,
    source: string,
  ) {
    this.hf = hf;
    this.source = source;
    this.chatTemplate = chatTemplate;
    this.vocabSize = hf.model?.vocab.length ?? 0;
    this.specialTokenIds = [...hf.get_added_tokens_decoder().values()]
      .filter((t) => t.special)
      .map((t) => t.id)
      .sort((a, b) => a - b);
    const resolve = (role: SpecialRole): [string | undefined, number | undefined] =>
      this.resolveSpecial(role, tokenizerConfig, modelConfig);
    [this.bosToken, this.bosTokenId] = resolve("bos");
    [this.eosToken, this.eosTokenId] = resolve("eos");
    [this.padToken, this.padTokenId] = resolve("pad");
    [this.unkToken, this.unkTokenId] = resolve("unk");
  }

  // tokenizer_config.json decides when it names the token (explicit null means
  // "none", as for Qwen2's BOS); config.json's *_token_id fills in only when
  // tokenizer_config.json is silent.
  private resolveSpecial(
    role: SpecialRole,
    config: JsonObject,
    modelConfig: JsonObject | undefined,
  ): [string | undefined, number | undefined] {
    const key = `${role}_token`;
    if (key in config) {
      const token = configTokenString(config, key, `${this.source} tokenizer_config.json`);
      if (token === undefined) return [undefined, undefined];
      const id = this.hf.token_to_id(token);
      if (id === undefined) {
        throw new Error(`${this.source}: tokenizer_config.json ${key} ${JSON.stringify(token)} is not in the vocabulary`);
      }
      return [token, id];
    }
    if (role === "unk") {
      const unk = this.hf.model?.unk_token;
      return unk === undefined || unk === null ? [undefined, undefined] : [unk, this.hf.token_to_id(unk)];
    }
    const idKey = `${role}_token_id`;
    const raw = modelConfig?.[idKey];
    if (raw === undefined || raw === null) return [undefined, undefined];
    // Some configs list several EOS ids (e.g. Llama 3); the first is the canonical one.
    const id = Array.isArray(raw) ? raw[0] : raw;
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new Error(`${this.source}: config.json ${idKey} must be a non-negative integer or a list of them, got ${JSON.stringify(raw)}`);
    }
    const token = this.hf.id_to_token(id);
    if (token === undefined) throw new Error(`${this.source}: config.json ${idKey} ${id} is outside the vocabulary`);
    return [token, id];
  }

  encode(text: string, { addSpecialTokens = false }: EncodeOptions = {}): number[] {
    const { ids, tokens } = this.hf.encode(text, { add_special_tokens: addSpecialTokens });
    for (let i = 0; i < ids.length; i++) {
      if (typeof ids[i] !== "number") {
        // Only possible for a model without unk_token and without byte fallback.
        throw new Error(`${this.source}: cannot encode piece ${JSON.stringify(tokens[i])}: not in the vocabulary and no unk_token`);
      }
    }
    return ids;
  }

  decode(ids: readonly number[], { skipSpecialTokens = false }: DecodeOptions = {}): string {
    // The library rejects empty input; the empty sequence is simply "".
    if (ids.length === 0) return "";
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === undefined || this.hf.id_to_token(id) === undefined) {
        throw new RangeError(`${this.source}: cannot decode ids[${i}] = ${id}: not a token id (vocabulary has ids 0..${this.vocabSize - 1})`);
      }
    }
    return this.hf.decode([...ids], {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: false,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  isSpecial(id: number): boolean {
    return this.specialTokenIds.includes(id);
  }

  /** A decoder that turns ids arriving one at a time into text deltas. */
  streamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }

  applyChatTemplate(
    messages: readonly ChatMessage[],
    { addGenerationPrompt = false, template, extra = {} }: ChatTemplateOptions = {},
  ): string {
    const source = template ?? this.chatTemplate;
    if (source === undefined) {
      throw new Error(
        `${this.source}: no chat template (tokenizer_config.json has no chat_template and there is no chat_template.jinja); ` +
          `pass { template } to applyChatTemplate`,
      );
    }
    let compiled = this.templates.get(source);
    if (compiled === undefined) {
      try {
        compiled = new Template(source);
      } catch (err) {
        throw new Error(`${this.source}: chat template does not parse: ${errorMessage(err)}`, { cause: err });
      }
      this.templates.set(source, compiled);
    }
    // Like transformers, only defined special tokens are passed; an absent one is Jinja-undefined.
    const specials: Record<string, string> = {};
    for (const [key, value] of [
      ["bos_token", this.bosToken],
      ["eos_token", this.eosToken],
      ["pad_token", this.padToken],
      ["unk_token", this.unkToken],
    ] as const) {
      if (value !== undefined) specials[key] = value;
    }
    try {
      return compiled.render({
        ...extra,
        ...specials,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (err) {
      throw new Error(`${this.source}: chat template failed to render: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/**
 * Incremental detokenizer for streaming generation. Decoding ids one by one
 * and concatenating is wrong for byte-level and byte-fallback vocabularies (a
 * character can span tokens) and for decoders that strip a leading space, so
 * each delta is the difference between decoding a short window with and
 * without the new ids. Text is held back while it ends in an incomplete UTF-8
 * sequence (U+FFFD), and flush() releases whatever is left.
 */
export class StreamDecoder {
  private ids: number[] = [];
  // ids[0..prefixEnd) is context already emitted; ids[prefixEnd..readEnd) emitted text whose
  // decoding the next delta is measured against; ids[readEnd..) not yet emitted.
  private prefixEnd = 0;
  private readEnd = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Adds one id; returns the newly completed text (possibly ""). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.tokenizer.decode(this.ids.slice(this.prefixEnd, this.readEnd), this.options);
    const after = this.tokenizer.decode(this.ids.slice(this.prefixEnd), this.options);
    if (after.length <= before.length || after.endsWith("\uFFFD")) return "";
    // Drop ids that no longer matter so memory stays bounded on long generations.
    this.ids = this.ids.slice(this.readEnd);
    this.prefixEnd = 0;
    this.readEnd = this.ids.length;
    return after.slice(before.length);
  }

  /** Returns text still held back (e.g. an unfinished UTF-8 sequence) and resets. */
  flush(): string {
    const before = this.tokenizer.decode(this.ids.slice(this.prefixEnd, this.readEnd), this.options);
    const after = this.tokenizer.decode(this.ids.slice(this.prefixEnd), this.options);
    this.ids = [];
    this.prefixEnd = 0;
    this.readEnd = 0;
    return after.slice(before.length);
  }
}
