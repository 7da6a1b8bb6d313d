import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { llama2cTokenizer, llama2cTokenizerConfig, llama2cTokenizerJson } from "../cells-lib/tokenizer/llama2c.ts";
import { loadTokenizer, tokenizerFromJson } from "../cells-lib/tokenizer/tokenizer.ts";
import { venvProgram } from "../cells-lib/util/project-python.ts";
import { llama2cGreedy200, sharedPath, stories } from "./helpers.ts";

const TOK_PATH = join(stories, "tok512.bin");
const bin = new Uint8Array(readFileSync(TOK_PATH));

// --- An independent port of llama2.c's tokenizer (run.c), used as the oracle. ---

interface RefVocab {
  pieces: string[];
  scores: number[];
  lookup: Map<string, number>;
}

function readRefVocab(data: Uint8Array): RefVocab {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const pieces: string[] = [];
  const scores: number[] = [];
  let off = 4; // skip max_token_length
  while (off < data.byteLength) {
    scores.push(view.getFloat32(off, true));
    const len = view.getInt32(off + 4, true);
    pieces.push(new TextDecoder().decode(data.subarray(off + 8, off + 8 + len)));
    off += 8 + len;
  }
  const lookup = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!lookup.has(p)) lookup.set(p, i);
  });
  return { pieces, scores, lookup };
}

// llama2.c encode(t, text, bos=0, eos=0): a dummy " " prefix, one token per
// UTF-8 code point (or its bytes + 3 when the code point is not a piece), then
// repeatedly merge the leftmost adjacent pair whose concatenation is the
// best-scoring piece.
function refEncode(vocab: RefVocab, text: string): number[] {
  const tokens: number[] = [];
  if (text !== "") tokens.push(vocab.lookup.get(" ") as number);
  for (const ch of text) {
    const id = vocab.lookup.get(ch);
    if (id !== undefined) tokens.push(id);
    else for (const byte of new TextEncoder().encode(ch)) tokens.push(byte + 3);
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const merged = `${vocab.pieces[tokens[i] as number]}${vocab.pieces[tokens[i + 1] as number]}`;
      const id = vocab.lookup.get(merged);
      if (id !== undefined && (vocab.scores[id] as number) > bestScore) {
        bestScore = vocab.scores[id] as number;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

const ref = readRefVocab(bin);
const gsm8kFile = sharedPath(
  "data/gsm8k/test.jsonl",
  "llama2.c's tokenizer on 300 GSM8K questions (the story and extras still run)",
);
const gsm8k =
  gsm8kFile === undefined
    ? []
    : readFileSync(gsm8kFile, "utf8")
        .split("\n")
        .filter((line) => line.trim() !== "")
        .slice(0, 300)
        .map((line) => (JSON.parse(line) as { question: string }).question);
const story = readFileSync(llama2cGreedy200, "utf8");
// GSM8K's first 300 questions happen to stay inside the 512-piece vocabulary,
// so a few extra texts exercise byte fallback (é, —, emoji, CJK) and odd spacing.
const extras = ["héllo — naïve café 🦙 日本語", "  leading, trailing  ", "tabs\tand\nnewlines\n"];
const texts = [...gsm8k, story];

describe("llama2.c tokenizer as a Hugging Face tokenizer", () => {
  const tok = llama2cTokenizer(bin);

  test.skipIf(!gsm8kFile)("GSM8K gives 300 questions", () => {
    expect(gsm8k).toHaveLength(300);
  });

  test("inputs are what we think they are", () => {
    expect(story.startsWith("Once upon a time")).toBe(true);
    expect(ref.pieces).toHaveLength(512);
  });

  test("encode matches llama2.c's encode on 300 GSM8K questions and the reference story", () => {
    const mismatches: string[] = [];
    for (const text of [...texts, ...extras]) {
      const ours = tok.encode(text);
      const expected = refEncode(ref, text);
      if (JSON.stringify(ours) !== JSON.stringify(expected)) mismatches.push(text);
    }
    expect(mismatches).toEqual([]);
    // Non-vacuous: the extras really go through byte fallback.
    expect(tok.encode(extras[0] as string).some((id) => id >= 3 && id < 259)).toBe(true);
  });

  test("decode inverts encode", () => {
    for (const text of [...texts, ...extras]) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.decode(tok.encode("  two leading spaces"))).toBe("  two leading spaces");
    expect(tok.encode("")).toEqual([]);
  });

  test("BOS handling matches llama2.c: prepended on request, leading space stripped on decode", () => {
    const ids = tok.encode("Once upon a time", { addSpecialTokens: true });
    expect(ids[0]).toBe(1);
    expect(ids.slice(1)).toEqual(refEncode(ref, "Once upon a time"));
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("Once upon a time");
    expect(tok.decode(ids)).toBe("<s> Once upon a time");
  });

  test("special-token text becomes the special token (llama2.c would spell it out)", () => {
    // Known, deliberate difference: like Hugging Face's Llama tokenizers, "<s>" in text is BOS.
    expect(tok.encode("<s>")).toEqual([1]);
    expect(refEncode(ref, "<s>")).not.toEqual([1]);
  });

  test("vocabulary layout and special ids", () => {
    expect(tok.vocabSize).toBe(512);
    expect([tok.unkTokenId, tok.bosTokenId, tok.eosTokenId, tok.padTokenId]).toEqual([0, 1, 2, undefined]);
    expect(tok.specialTokenIds).toEqual([0, 1, 2]);
    expect(tok.idToToken(3)).toBe("<0x00>");
    expect(tok.idToToken(258)).toBe("<0xFF>");
    expect(tok.tokenToId("\u2581the")).toBe(265);
    expect(tok.chatTemplate).toBeUndefined();
    expect(() => tok.applyChatTemplate([{ role: "user", content: "hi" }])).toThrow(/no chat template/);
  });

  test("merges are ranked by the merged piece's score, best first", () => {
    const json = llama2cTokenizerJson(bin) as unknown as { model: { merges: string[]; vocab: Record<string, number> } };
    const { merges, vocab } = json.model;
    const score = (merge: string): number => ref.scores[vocab[merge.replace(" ", "")] as number] as number;
    expect(merges[0]).toBe("\u2581 t");
    expect(merges.every((m) => m.split(" ").length === 2)).toBe(true);
    for (let i = 1; i < merges.length; i++) {
      expect(score(merges[i - 1]!)).toBeGreaterThanOrEqual(score(merges[i]!));
    }
  });

  test("streaming decode matches decoding everything at once", () => {
    for (const text of [...texts.slice(0, 50), story, "héllo — 🦙"]) {
      const ids = tok.encode(text, { addSpecialTokens: true });
      const stream = tok.streamDecoder({ skipSpecialTokens: true });
      let out = "";
      for (const id of ids) out += stream.push(id);
      out += stream.flush();
      expect(out).toBe(text);
    }
  });

  test("the JSON survives a round trip through a tokenizer directory", async () => {
    const dir = await mkdtemp(join(tmpdir(), "thinkcells-llama2c-"));
    try {
      await writeFile(join(dir, "tokenizer.json"), JSON.stringify(llama2cTokenizerJson(bin)));
      await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(llama2cTokenizerConfig()));
      const loaded = await loadTokenizer(dir);
      for (const text of texts.slice(0, 20)) expect(loaded.encode(text)).toEqual(tok.encode(text));
      expect(loaded.bosTokenId).toBe(1);
      // transformers' AutoTokenizer (what TRL and a Hub user load) encodes as thinkcells does,
      // leading spaces included.
      const samples = [" <think> 12+30=42 </think> 42", "Once upon a time", "  two spaces", ...texts.slice(0, 5)];
      const code = [
        "import json, sys",
        "from transformers import AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])",
        "print(json.dumps([tok(t)['input_ids'] for t in json.loads(sys.argv[2])]))",
      ].join("\n");
      const out = execFileSync(venvProgram("python"), ["-c", code, dir, JSON.stringify(samples)], { encoding: "utf8" });
      expect(JSON.parse(out)).toEqual(samples.map((text) => loaded.encode(text, { addSpecialTokens: true })));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the config object has what a Llama tokenizer_config.json needs", () => {
    const config = llama2cTokenizerConfig();
    expect(config).toMatchObject({
      tokenizer_class: "PreTrainedTokenizerFast",
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<unk>",
      add_bos_token: true,
    });
    expect(config).not.toHaveProperty("chat_template");
    const fromObjects = tokenizerFromJson(llama2cTokenizerJson(bin), config);
    expect(fromObjects.encode("Hi there")).toEqual(refEncode(ref, "Hi there"));
  });
});

describe("llama2.c tokenizer file validation", () => {
  test("a file cut inside a token names the source and the token index", () => {
    expect(() => llama2cTokenizerJson(bin.subarray(0, 1000), "my-tok.bin")).toThrow(
      /^my-tok\.bin: truncated at token \d+/,
    );
    expect(() => llama2cTokenizerJson(bin.subarray(0, 2))).toThrow(/tok512\.bin: 2 bytes is too short/);
  });

  test("with vocabSize, a file missing whole tokens is reported", () => {
    expect(() => llama2cTokenizerJson(bin, "tok512.bin", { vocabSize: 513 })).toThrow(
      /tok512\.bin: truncated at token 512 .*expected 513 tokens/,
    );
    expect(() => llama2cTokenizerJson(bin, "tok512.bin", { vocabSize: 500 })).toThrow(
      /unexpected bytes after the 500 tokens/,
    );
    expect(llama2cTokenizerJson(bin, "tok512.bin", { vocabSize: 512 }).model).toBeDefined();
  });

  test("corrupt lengths and byte tokens are reported", () => {
    const corrupt = bin.slice();
    const view = new DataView(corrupt.buffer);
    // Token 0's length field sits after the header (4) and its score (4).
    view.setInt32(8, 1000, true);
    expect(() => llama2cTokenizerJson(corrupt, "x.bin")).toThrow(
      /x\.bin: token 0 has byte length 1000, outside 0..max_token_length \(7\)/,
    );

    const shuffled = bin.slice();
    // Token 3 starts after "<unk>" (8 + 5) and "\n<s>\n" (8 + 5) and "\n</s>\n" (8 + 6); its text is "<0x00>".
    const token3Text = 4 + 13 + 13 + 14 + 8;
    shuffled[token3Text + 3] = "9".charCodeAt(0);
    expect(() => llama2cTokenizerJson(shuffled, "x.bin")).toThrow(
      /x\.bin: token 3 should be the byte token <0x00>, got "<0x90>"/,
    );
  });
});
