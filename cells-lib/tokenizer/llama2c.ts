// Converts a llama2.c tokenizer file (e.g. tinyllamas' tok512.bin) into a
// Hugging Face tokenizer.json + tokenizer_config.json that encode exactly like
// llama2.c's encode() and decode like its decode().
//
// File format (little-endian): int32 max_token_length, then per token a
// float32 score, an int32 byte length and that many UTF-8 bytes. Ids 0, 1, 2
// are unk, BOS, EOS (stored as "<unk>", "\n<s>\n", "\n</s>\n" by llama2.c's
// export); ids 3..258 are the byte-fallback tokens "<0x00>".."<0xFF>"; the
// export wrote sentencepiece's "▁" as a plain space in the other pieces.

import { type AddedTokenJson, type Tokenizer, type TokenizerJson, tokenizerFromJson } from "./tokenizer.ts";

const SPACE_MARK = "\u2581"; // sentencepiece's "▁"
const SPECIALS = ["<unk>", "<s>", "</s>"] as const;
const FIRST_BYTE_ID = 3;
const FIRST_PIECE_ID = FIRST_BYTE_ID + 256;

export interface Llama2cVocab {
  maxTokenLength: number;
  /** Pieces as stored in the file (spaces, not "▁"). */
  pieces: string[];
  scores: number[];
}

export interface Llama2cOptions {
  /**
   * Expected number of tokens (the model's vocab_size). The file does not
   * record it, so without it a file cut exactly between tokens looks complete.
   */
  vocabSize?: number;
}

const byteToken = (byte: number): string => `<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`;

/** Parses and validates a llama2.c tokenizer file. */
function readLlama2cVocab(bin: Uint8Array, source = "tok512.bin", options: Llama2cOptions = {}): Llama2cVocab {
  const { vocabSize } = options;
  if (vocabSize !== undefined && (!Number.isInteger(vocabSize) || vocabSize < FIRST_PIECE_ID)) {
    throw new Error(
      `${source}: vocabSize must be an integer ≥ ${FIRST_PIECE_ID} (3 specials + 256 bytes), got ${vocabSize}`,
    );
  }
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  if (bin.byteLength < 4) {
    throw new Error(`${source}: ${bin.byteLength} bytes is too short for the int32 max_token_length header`);
  }
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0) throw new Error(`${source}: max_token_length must be positive, got ${maxTokenLength}`);

  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const pieces: string[] = [];
  const scores: number[] = [];
  let offset = 4;
  while (vocabSize === undefined ? offset < bin.byteLength : pieces.length < vocabSize) {
    const i = pieces.length;
    if (offset + 8 > bin.byteLength) {
      const what = offset === bin.byteLength ? "ends" : `has only ${bin.byteLength - offset} of the 8 header bytes`;
      throw new Error(
        `${source}: truncated at token ${i} (byte offset ${offset}): the file ${what} before its score and length` +
          (vocabSize !== undefined ? ` (expected ${vocabSize} tokens)` : ""),
      );
    }
    const score = view.getFloat32(offset, true);
    const length = view.getInt32(offset + 4, true);
    offset += 8;
    if (!Number.isFinite(score)) throw new Error(`${source}: token ${i} has a non-finite score ${score}`);
    if (length < 0 || length > maxTokenLength) {
      throw new Error(
        `${source}: token ${i} has byte length ${length}, outside 0..max_token_length (${maxTokenLength})`,
      );
    }
    if (offset + length > bin.byteLength) {
      throw new Error(
        `${source}: truncated at token ${i}: needs ${length} bytes at offset ${offset}, only ${bin.byteLength - offset} left`,
      );
    }
    let piece: string;
    try {
      piece = utf8.decode(bin.subarray(offset, offset + length));
    } catch {
      throw new Error(`${source}: token ${i} is not valid UTF-8`);
    }
    offset += length;
    pieces.push(piece);
    scores.push(score);
  }
  if (offset !== bin.byteLength) {
    throw new Error(`${source}: ${bin.byteLength - offset} unexpected bytes after the ${pieces.length} tokens`);
  }
  if (pieces.length < FIRST_PIECE_ID) {
    throw new Error(
      `${source}: has ${pieces.length} tokens; a llama2.c vocabulary needs at least ${FIRST_PIECE_ID} (3 specials + 256 bytes)`,
    );
  }
  for (let byte = 0; byte < 256; byte++) {
    const id = FIRST_BYTE_ID + byte;
    if (pieces[id] !== byteToken(byte)) {
      throw new Error(
        `${source}: token ${id} should be the byte token ${byteToken(byte)}, got ${JSON.stringify(pieces[id])}`,
      );
    }
  }
  return { maxTokenLength, pieces, scores };
}

/**
 * A tokenizer.json object reproducing llama2.c's encode(): byte-fallback BPE
 * whose merges are ranked by the merged piece's score, highest first, since
 * llama2.c repeatedly merges the adjacent pair whose concatenation scores best.
 */
export function llama2cTokenizerJson(
  bin: Uint8Array,
  source = "tok512.bin",
  options: Llama2cOptions = {},
): TokenizerJson {
  const { pieces, scores } = readLlama2cVocab(bin, source, options);

  const vocab: Record<string, number> = {};
  const addedTokens: AddedTokenJson[] = [];
  SPECIALS.forEach((content, id) => {
    vocab[content] = id;
    addedTokens.push({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
  });
  for (let id = SPECIALS.length; id < pieces.length; id++) {
    const piece = id < FIRST_PIECE_ID ? (pieces[id] as string) : (pieces[id] as string).replaceAll(" ", SPACE_MARK);
    const previous = vocab[piece];
    if (previous !== undefined) {
      throw new Error(`${source}: token ${id} ${JSON.stringify(pieces[id])} duplicates token ${previous}`);
    }
    vocab[piece] = id;
  }

  // Every way a piece can arise from two adjacent pieces is a merge rule; split
  // points are code points because BPE starts from single characters.
  const candidates: { left: string; right: string; score: number; id: number; cut: number }[] = [];
  const isPiece = (s: string): boolean => (vocab[s] ?? -1) >= FIRST_PIECE_ID;
  for (let id = FIRST_PIECE_ID; id < pieces.length; id++) {
    const chars = Array.from((pieces[id] as string).replaceAll(" ", SPACE_MARK));
    for (let cut = 1; cut < chars.length; cut++) {
      const left = chars.slice(0, cut).join("");
      const right = chars.slice(cut).join("");
      if (isPiece(left) && isPiece(right)) candidates.push({ left, right, score: scores[id] as number, id, cut });
    }
  }
  // Ties on score fall back to vocabulary order, sentencepiece's own merge order.
  candidates.sort((a, b) => b.score - a.score || a.id - b.id || a.cut - b.cut);
  // "left right" strings, the form every tokenizers version reads (pieces hold no spaces).
  const merges = candidates.map((c) => `${c.left} ${c.right}`);

  return {
    version: "1.0",
    added_tokens: addedTokens,
    // llama2.c prepends one space to non-empty text, and pieces spell spaces as "▁".
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: SPACE_MARK },
        { type: "Replace", pattern: { String: " " }, content: SPACE_MARK },
      ],
    },
    pre_tokenizer: null,
    // encode(text, { addSpecialTokens: true }) prepends BOS like llama2.c's encode(..., bos=1, eos=0).
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    // Strip removes the space the encoder prepended, as llama2.c's decode does after BOS.
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPACE_MARK }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** The tokenizer_config.json that goes with llama2cTokenizerJson (no chat template: it is a base model). */
export function llama2cTokenizerConfig(): Record<string, unknown> {
  const addedTokensDecoder: Record<string, unknown> = {};
  SPECIALS.forEach((content, id) => {
    addedTokensDecoder[String(id)] = {
      content,
      lstrip: false,
      normalized: false,
      rstrip: false,
      single_word: false,
      special: true,
    };
  });
  return {
    // The tokenizer.json as written: transformers 5 rebuilds a "LlamaTokenizer"'s pre-tokenizer
    // from its own defaults, and text after a leading space then encodes differently.
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: "<s>",
    eos_token: "</s>",
    unk_token: "<unk>",
    pad_token: null,
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: addedTokensDecoder,
  };
}

/** Convenience: a ready Tokenizer for a llama2.c tokenizer file. */
export function llama2cTokenizer(bin: Uint8Array, source = "tok512.bin", options: Llama2cOptions = {}): Tokenizer {
  return tokenizerFromJson(llama2cTokenizerJson(bin, source, options), llama2cTokenizerConfig(), { source });
}
