import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { sharedPath } from "./helpers.ts";

// The real Qwen2 tokenizer and llama.cpp's reference tokenizations of it, from ../shared.
const QWEN2_DIR = sharedPath("fixtures/qwen2_tokenizer", "the Qwen2 tokenizer tests");
const VECTORS = sharedPath(
  "fixtures/tokenizer_vectors/ggml-vocab-qwen2.gguf.inp",
  "the Qwen2 reference tokenizations",
)?.replace(/\.inp$/, "");
const available = QWEN2_DIR !== undefined && VECTORS !== undefined;
const SEPARATOR = "\n__ggml_vocab_test__\n";

// The .inp file is "text1<SEP>text2<SEP>...text46<SEP>": every text, the last
// included, is followed by the separator, so splitting leaves one trailing "".
function readVectors(): { text: string; ids: number[] }[] {
  const parts = readFileSync(`${VECTORS}.inp`, "utf8").split(SEPARATOR);
  if (parts.at(-1) !== "") throw new Error(`${VECTORS}.inp does not end with the separator`);
  parts.pop();
  // One line per text (" 1 2 3"), the empty text giving an empty line; the file ends with "\n".
  const lines = readFileSync(`${VECTORS}.out`, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length !== parts.length) throw new Error(`${parts.length} texts but ${lines.length} id lines`);
  return parts.map((text, i) => ({
    text,
    ids: (lines[i] ?? "")
      .trim()
      .split(/\s+/)
      .filter((s) => s !== "")
      .map(Number),
  }));
}

const vectors = available ? readVectors() : [];

let qwen: Tokenizer;
beforeAll(async () => {
  if (QWEN2_DIR) qwen = await loadTokenizer(QWEN2_DIR);
});

function streamAll(tok: Tokenizer, ids: number[], skipSpecialTokens = false): string {
  const stream = tok.streamDecoder({ skipSpecialTokens });
  let text = "";
  for (const id of ids) text += stream.push(id);
  return text + stream.flush();
}

describe.skipIf(!available)("Qwen2 tokenizer built from vocab.json + merges.txt", () => {
  test("the fixture has all 46 reference texts, including the empty one", () => {
    expect(vectors).toHaveLength(46);
    expect(vectors[0]?.text).toBe("ied 4 ½ months");
    expect(vectors[2]).toEqual({ text: "", ids: [] });
  });

  test.each(vectors.map((v, i) => [i, v] as const))("reference tokenization #%i", (_i, { text, ids }) => {
    expect(qwen.encode(text)).toEqual(ids);
  });

  test("decode inverts encode (up to the NFC normalizer)", () => {
    for (const { text } of vectors) {
      expect(qwen.decode(qwen.encode(text))).toBe(text.normalize("NFC"));
    }
  });

  test("special tokens are matched in text and reported", () => {
    expect(qwen.encode("<|im_start|>hello<|im_end|>")).toEqual([151644, 14990, 151645]);
    expect(qwen.encode("<|im_start|>hello<|im_end|>", { addSpecialTokens: true })).toEqual([151644, 14990, 151645]);
    expect(qwen.decode([151644, 14990, 151645])).toBe("<|im_start|>hello<|im_end|>");
    expect(qwen.decode([151644, 14990, 151645], { skipSpecialTokens: true })).toBe("hello");
    expect(qwen.specialTokenIds).toEqual([151643, 151644, 151645]);
    expect(qwen.tokenToId("<|endoftext|>")).toBe(151643);
    expect(qwen.idToToken(14990)).toBe("hello");
    expect(qwen.tokenToId("no such token")).toBeUndefined();
    expect(qwen.vocabSize).toBe(151646);
    expect(qwen.bosTokenId).toBeUndefined(); // tokenizer_config.json says bos_token: null
    expect(qwen.eosTokenId).toBe(151643);
    expect(qwen.padTokenId).toBe(151643);
    expect(qwen.decode([])).toBe("");
  });

  test("decode rejects ids outside the vocabulary", () => {
    expect(() => qwen.decode([14990, 999999])).toThrow(/ids\[1\] = 999999/);
  });

  test("ChatML template renders system + user with a generation prompt", () => {
    const text = qwen.applyChatTemplate(
      [
        { role: "system", content: "You are a helpful assistant." },
        { role: "user", content: "What is 2+2?" },
      ],
      { addGenerationPrompt: true },
    );
    expect(text).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" +
        "<|im_start|>assistant\n" +
        "template ends here",
    );
    const withoutPrompt = qwen.applyChatTemplate([{ role: "user", content: "hi" }]);
    expect(withoutPrompt).toBe("<|im_start|>user\nhi<|im_end|>\ntemplate ends here");
    const ids = qwen.encode(text);
    expect(ids.slice(0, 1)).toEqual([151644]);
    expect(qwen.decode(ids)).toBe(text);
  });

  test("an explicit template and extra variables are used", () => {
    const text = qwen.applyChatTemplate([{ role: "user", content: "x" }], {
      template: "{{ eos_token }}|{{ greeting }}|{% for m in messages %}{{ m.role }}={{ m.content }}{% endfor %}",
      extra: { greeting: "hey" },
    });
    expect(text).toBe("<|endoftext|>|hey|user=x");
  });

  test("streaming decode matches decoding everything at once", () => {
    const texts = [...vectors.map((v) => v.text), "rare 𠜎𝄞🫠ꙮ and 中文 split across byte-level tokens"];
    for (const text of texts) {
      const ids = qwen.encode(text);
      expect(streamAll(qwen, ids)).toBe(qwen.decode(ids));
    }
    const chat = qwen.encode("<|im_start|>user\nhi 🦙<|im_end|>");
    expect(streamAll(qwen, chat, true)).toBe(qwen.decode(chat, { skipSpecialTokens: true }));
  });

  test("a multi-byte character is held back until it is complete", () => {
    const ids = qwen.encode("𠜎"); // a rare CJK character: three byte-level tokens
    expect(ids.length).toBeGreaterThan(1);
    const stream = qwen.streamDecoder();
    const deltas = ids.map((id) => stream.push(id));
    expect(deltas.slice(0, -1).every((d) => d === "")).toBe(true);
    expect(deltas.at(-1)).toBe("𠜎");
  });
});

describe("loading from other directory layouts", () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "thinkcells-tok-"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function makeDir(name: string, files: Record<string, string>): Promise<string> {
    const dir = join(root, name);
    await mkdir(dir);
    for (const [file, content] of Object.entries(files)) await writeFile(join(dir, file), content);
    return dir;
  }

  // A tiny GPT-2 style vocabulary: "Ġ" is the byte-level symbol for a space.
  const gpt2Vocab = JSON.stringify({ a: 0, b: 1, ab: 2, Ġ: 3, Ġa: 4, "<|endoftext|>": 5 });
  const gpt2Config = JSON.stringify({
    tokenizer_class: "GPT2Tokenizer",
    bos_token: "<|endoftext|>",
    eos_token: "<|endoftext|>",
  });

  test("GPT2Tokenizer from vocab.json + merges.txt with a #version line", async () => {
    const dir = await makeDir("gpt2", {
      "vocab.json": gpt2Vocab,
      "merges.txt": "#version: 0.2\na b\nĠ a\n",
      "tokenizer_config.json": gpt2Config,
    });
    const tok = await loadTokenizer(dir);
    expect(tok.encode("ab a<|endoftext|>")).toEqual([2, 4, 5]);
    expect(tok.decode([2, 4, 5])).toBe("ab a<|endoftext|>");
    expect(tok.specialTokenIds).toEqual([5]); // registered from bos/eos names, like transformers does
    expect(tok.eosTokenId).toBe(5);
    expect(() => tok.applyChatTemplate([{ role: "user", content: "hi" }])).toThrow(/no chat template/);
  });

  test("config.json supplies token ids tokenizer_config.json does not name", async () => {
    const dir = await makeDir("gpt2-config", {
      "vocab.json": gpt2Vocab,
      "merges.txt": "a b\n",
      "tokenizer_config.json": JSON.stringify({ tokenizer_class: "GPT2TokenizerFast" }),
      "config.json": JSON.stringify({ bos_token_id: 5, eos_token_id: [5, 2] }),
    });
    const tok = await loadTokenizer(dir);
    expect(tok.bosTokenId).toBe(5);
    expect(tok.eosTokenId).toBe(5);
    expect(tok.padTokenId).toBeUndefined();
  });

  test("a missing directory is named", async () => {
    await expect(loadTokenizer(join(root, "nope"))).rejects.toThrow(/directory .*nope does not exist/);
  });

  test("a directory without tokenizer files lists what it found", async () => {
    const dir = await makeDir("empty", { "README.md": "hi" });
    await expect(loadTokenizer(dir)).rejects.toThrow(
      /no tokenizer\.json and no vocab\.json \+ merges\.txt; found: README\.md/,
    );
    const onlyVocab = await makeDir("only-vocab", { "vocab.json": gpt2Vocab });
    await expect(loadTokenizer(onlyVocab)).rejects.toThrow(/merges\.txt is missing/);
  });

  test("bad JSON names the file", async () => {
    const dir = await makeDir("bad-vocab", {
      "vocab.json": '{"a": 0,',
      "merges.txt": "a b\n",
      "tokenizer_config.json": gpt2Config,
    });
    await expect(loadTokenizer(dir)).rejects.toThrow(/bad-vocab\/vocab\.json: invalid JSON/);
    const dir2 = await makeDir("bad-config", {
      "vocab.json": gpt2Vocab,
      "merges.txt": "a b\n",
      "tokenizer_config.json": "not json",
    });
    await expect(loadTokenizer(dir2)).rejects.toThrow(/bad-config\/tokenizer_config\.json: invalid JSON/);
    const dir3 = await makeDir("bad-tokenizer-json", { "tokenizer.json": "[1, 2]" });
    await expect(loadTokenizer(dir3)).rejects.toThrow(
      /tokenizer\.json: expected a JSON object at the top level, got an array/,
    );
    const dir4 = await makeDir("no-model", { "tokenizer.json": "{}" });
    await expect(loadTokenizer(dir4)).rejects.toThrow(/tokenizer\.json: "model" must be an object/);
  });

  test("unsupported tokenizer_class lists the supported ones", async () => {
    const dir = await makeDir("bert", {
      "vocab.json": gpt2Vocab,
      "merges.txt": "a b\n",
      "tokenizer_config.json": JSON.stringify({ tokenizer_class: "BertTokenizer" }),
    });
    await expect(loadTokenizer(dir)).rejects.toThrow(
      /tokenizer_class "BertTokenizer".*supported: Qwen2Tokenizer, GPT2Tokenizer/,
    );
    const noConfig = await makeDir("no-config", { "vocab.json": gpt2Vocab, "merges.txt": "a b\n" });
    await expect(loadTokenizer(noConfig)).rejects.toThrow(/no tokenizer_config\.json/);
  });

  test("malformed vocab ids and merges lines name the file and line", async () => {
    const dir = await makeDir("bad-merges", {
      "vocab.json": gpt2Vocab,
      "merges.txt": "a b\nabc\n",
      "tokenizer_config.json": gpt2Config,
    });
    await expect(loadTokenizer(dir)).rejects.toThrow(/merges\.txt:2: expected two space-separated symbols, got "abc"/);
    const dir2 = await makeDir("bad-ids", {
      "vocab.json": JSON.stringify({ a: "zero" }),
      "merges.txt": "",
      "tokenizer_config.json": gpt2Config,
    });
    await expect(loadTokenizer(dir2)).rejects.toThrow(/vocab\.json: id of token "a" must be a non-negative integer/);
  });
});
