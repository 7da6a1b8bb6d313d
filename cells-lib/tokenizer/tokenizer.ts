// Tokenizer loading and the Tokenizer wrapper used by notebooks.
//
// Tokenization itself is done by @huggingface/tokenizers (pure JS, so it runs
// unchanged under Node and Deno). This module's job is getting a Hugging Face
// tokenizer directory into the shape that library wants, with errors that name
// the file and field at fault, plus the bits the library does not do: special
// token ids, chat templates (@huggingface/jinja) and streaming decode.

import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { byteLevelBpeTokenizerJson, SUPPORTED_CLASSES } from "./byte-level-bpe.ts";
import { errorMessage } from "./error-message.ts";
import { fileExists, isNotFound, readJsonObject, readOptionalJson, readText } from "./files.ts";
// Side effect: Python's strip/lstrip/rstrip(chars) in chat templates (see the module).
import "./jinja-strings.ts";
import type { JsonObject } from "./json.ts";
import { StreamDecoder } from "./stream-decoder.ts";
import { configTokenString, pickChatTemplate } from "./tokenizer-config.ts";
import { type AddedTokenJson, normalizeTokenizerJson, type TokenizerJson } from "./tokenizer-json.ts";

export type { AddedTokenJson, TokenizerJson };
// This module stays the one import for the tokenizer API; these live in their own modules.
export { byteLevelBpeTokenizerJson, StreamDecoder };

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

/**
 * Loads a Hugging Face tokenizer directory: tokenizer.json, or (for byte-level
 * BPE tokenizers shipped without one) vocab.json + merges.txt, plus the optional
 * tokenizer_config.json, config.json and chat_template.jinja.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  let dirStat: Awaited<ReturnType<typeof stat>>;
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
  return new Tokenizer(
    hf,
    tokenizerConfig,
    options.modelConfig,
    options.chatTemplate ?? pickChatTemplate(tokenizerConfig, source),
    source,
  );
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
      const token = configTokenString(config, key, `${this.source}: tokenizer_config.json`);
      if (token === undefined) return [undefined, undefined];
      const id = this.hf.token_to_id(token);
      if (id === undefined) {
        throw new Error(
          `${this.source}: tokenizer_config.json ${key} ${JSON.stringify(token)} is not in the vocabulary`,
        );
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
      throw new Error(
        `${this.source}: config.json ${idKey} must be a non-negative integer or a list of them, got ${JSON.stringify(raw)}`,
      );
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
        throw new Error(
          `${this.source}: cannot encode piece ${JSON.stringify(tokens[i])}: not in the vocabulary and no unk_token`,
        );
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
        throw new RangeError(
          `${this.source}: cannot decode ids[${i}] = ${id}: not a token id (vocabulary has ids 0..${this.vocabSize - 1})`,
        );
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
