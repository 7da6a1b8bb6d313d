import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import type { Model } from "../cells-lib/cells/model.ts";
import { forwardBackward } from "../cells-lib/cells/train.ts";
import { BUILTIN_TEMPLATES } from "../cells-lib/chat/templates.ts";
import {
  formatTruncationReport,
  promptTokens,
  type SftRow,
  type TruncationReport,
  tokenizeDataset,
  tokenizeExample,
} from "../cells-lib/chat/tokenize.ts";
import { packExamples } from "../cells-lib/sft/packing.ts";
import { llama2cTokenizer, llama2cTokenizerConfig, llama2cTokenizerJson } from "../cells-lib/tokenizer/llama2c.ts";
import {
  type ChatMessage,
  loadTokenizer,
  type Tokenizer,
  tokenizerFromJson,
} from "../cells-lib/tokenizer/tokenizer.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { sharedPath, stories } from "./helpers.ts";

const bin = new Uint8Array(readFileSync(path.join(stories, "tok512.bin")));
const tiny = llama2cTokenizer(bin);
const qwenDir = sharedPath("fixtures/qwen2_tokenizer", "the tests on the real Qwen2 tokenizer");
let qwen: Tokenizer;
beforeAll(async () => {
  if (qwenDir) qwen = await loadTokenizer(qwenDir);
});

/** The text of each run of consecutive weighted tokens. */
function trainedRuns(tokenizer: Tokenizer, tokens: readonly number[], weights: readonly number[]): string[] {
  const runs: number[][] = [];
  weights.forEach((w, i) => {
    if (w === 0) return;
    if (i > 0 && weights[i - 1] !== 0 && runs.length > 0) runs.at(-1)!.push(tokens[i]!);
    else runs.push([tokens[i]!]);
  });
  return runs.map((ids) => tokenizer.decode(ids));
}

/** sample()'s view of a completion: decoded as the continuation of its prompt. */
function continuation(tokenizer: Tokenizer, promptIds: number[], ids: number[]): string {
  const prefix = tokenizer.decode(promptIds, { skipSpecialTokens: true });
  return tokenizer.decode([...promptIds, ...ids], { skipSpecialTokens: true }).slice(prefix.length);
}

const conversation: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Hello!" },
  { role: "user", content: "2+2?" },
  { role: "tool", content: "4" },
  { role: "assistant", content: " It is 4.\n\nDone. 🎉" },
];

describe("plain on stories260K", () => {
  const row = { prompt: "23+45?", completion: "<think> 3+5=8, 2+4=6 </think> 68" };

  test("exact ids: BOS + prompt + completion as its continuation + EOS, loss on the completion and EOS", () => {
    const t = tokenizeExample(row, { tokenizer: tiny, template: "plain", cutoffLength: 512 });
    const prompt = [1, 410, 479, 472, 496, 484, 480, 450];
    const completion = [
      504, 413, 415, 271, 433, 505, 410, 472, 496, 480, 64, 487, 432, 410, 479, 496, 484, 64, 490, 410, 504, 492, 413,
      415, 271, 433, 505, 410, 490, 487,
    ];
    expect(t.tokens).toEqual([...prompt, ...completion, 2]);
    expect(t.weights).toEqual([...prompt.map(() => 0), ...completion.map(() => 1), 1]);
    expect(t.fullLength).toBe(39);
  });

  test("the round trip sample() makes: its prompt ids, and the completion decoded as their continuation", () => {
    const t = tokenizeExample(row, { tokenizer: tiny, template: "plain", cutoffLength: 512 });
    const promptIds = tiny.encode(row.prompt, { addSpecialTokens: true });
    expect(t.tokens.slice(0, promptIds.length)).toEqual(promptIds);
    expect(promptTokens(row, { tokenizer: tiny, template: "plain" })).toEqual(promptIds);
    const generated = t.tokens.slice(promptIds.length);
    expect(generated.at(-1)).toBe(tiny.eosTokenId);
    expect(continuation(tiny, promptIds, generated)).toBe(row.completion);
  });

  test("encoding the completion on its own would add SentencePiece's word-start space", () => {
    const alone = tiny.encode(row.completion);
    expect(alone[0]).toBe(410); // "▁"
    const promptIds = tiny.encode(row.prompt, { addSpecialTokens: true });
    expect(continuation(tiny, promptIds, alone)).toBe(` ${row.completion}`);
  });

  test("a merge across the boundary keeps the prompt's ids and encodes the completion after a newline anchor", () => {
    const split = { prompt: "Once upon a ti", completion: "me there was" };
    const t = tokenizeExample(split, { tokenizer: tiny, template: "plain", cutoffLength: 512 });
    const promptIds = tiny.encode(split.prompt, { addSpecialTokens: true });
    expect(
      tiny.encode(split.prompt + split.completion, { addSpecialTokens: true }).slice(0, promptIds.length),
    ).not.toEqual(promptIds);
    expect(t.tokens.slice(0, promptIds.length)).toEqual(promptIds);
    expect(continuation(tiny, promptIds, t.tokens.slice(promptIds.length))).toBe(split.completion);
    expect(tiny.idToToken(t.tokens[promptIds.length]!)).not.toMatch(/^▁/);
  });

  test("addBos and addEos", () => {
    const t = tokenizeExample(row, {
      tokenizer: tiny,
      template: "plain",
      cutoffLength: 512,
      addBos: false,
      addEos: false,
    });
    expect(t.tokens).toEqual(tiny.encode(row.prompt + row.completion));
    expect(t.weights[0]).toBe(0);
  });

  test("token 0 is never trained, even when it is a completion token", () => {
    const t = tokenizeExample(
      { prompt: "", completion: "Hi" },
      { tokenizer: tiny, template: "plain", cutoffLength: 512, addBos: false },
    );
    expect(t.weights).toEqual([0, ...t.tokens.slice(1).map(() => 1)]);
  });

  test("a tokenizer without EOS cannot end plain turns", () => {
    const noEos = tokenizerFromJson(
      llama2cTokenizerJson(bin),
      { ...llama2cTokenizerConfig(), eos_token: null },
      { source: "no-eos" },
    );
    expect(() => tokenizeExample(row, { tokenizer: noEos, template: "plain", cutoffLength: 64 })).toThrow(
      'tokenizeExample: option "addEos": no-eos has no EOS token; ' +
        'template "plain" ends assistant turns with it (pass addEos: false to train without a stop token)',
    );
    expect(
      tokenizeExample(row, { tokenizer: noEos, template: "plain", cutoffLength: 64, addEos: false }).tokens.at(-1),
    ).toBe(487);
  });
});

describe("thinking on stories260K", () => {
  test("multi-turn: every assistant turn and its EOS trained, nothing else", () => {
    const t = tokenizeExample({ messages: conversation }, { tokenizer: tiny, template: "thinking", cutoffLength: 512 });
    const text = tiny.decode(t.tokens);
    expect(text).toBe(
      "<s> System: Be brief.\nUser: Hi\nAssistant: Hello!</s>\nUser: 2+2?\nTool: 4\nAssistant: It is 4.\n\nDone. 🎉</s>\n",
    );
    // A run decoded alone loses its leading "▁" (the decoder strips a text's first space).
    expect(trainedRuns(tiny, t.tokens, t.weights)).toEqual(["Hello!</s>", "It is 4.\n\nDone. 🎉</s>"]);
  });

  test("segments join to the whole text's tokens when no merge crosses a boundary", () => {
    const messages = [
      { role: "user", content: "23+45?" },
      { role: "assistant", content: "<thinking> 3+5=8, 2+4=6 </thinking> 68" },
    ];
    const t = tokenizeExample(
      { messages },
      { tokenizer: tiny, template: "thinking", cutoffLength: 512, addEos: false },
    );
    const whole = tiny.applyChatTemplate(messages, { template: BUILTIN_TEMPLATES.thinking.source });
    expect(t.tokens).toEqual(tiny.encode(whole, { addSpecialTokens: true }));
    const prompt = promptTokens({ messages }, { tokenizer: tiny, template: "thinking" });
    expect(prompt).toEqual(tiny.encode("User: 23+45?\nAssistant:", { addSpecialTokens: true }));
    const reply = t.tokens.filter((_, i) => t.weights[i] === 1);
    expect(t.tokens.slice(prompt.length, prompt.length + reply.length)).toEqual(reply);
    expect(continuation(tiny, prompt, reply)).toBe(" <thinking> 3+5=8, 2+4=6 </thinking> 68");
  });

  test("the tokenizer's own template: BOS it writes is not doubled", () => {
    const withTemplate = tokenizerFromJson(llama2cTokenizerJson(bin), llama2cTokenizerConfig(), {
      chatTemplate: `{{ bos_token }}${BUILTIN_TEMPLATES.thinking.source}`,
    });
    const own = tokenizeExample(
      { messages: conversation },
      { tokenizer: withTemplate, template: "tokenizer", cutoffLength: 512, addEos: true },
    );
    const builtin = tokenizeExample(
      { messages: conversation },
      { tokenizer: tiny, template: "thinking", cutoffLength: 512 },
    );
    expect(own).toEqual(builtin);
  });
});

describe("chatml on Qwen2", () => {
  test.skipIf(!qwenDir)(
    "exact ids for one turn: the assistant content and <|im_end|> are trained, the newline after it is not",
    () => {
      const t = tokenizeExample(
        { prompt: "Hi", completion: "Hello!" },
        { tokenizer: qwen, template: "chatml", cutoffLength: 64 },
      );
      expect(t.tokens).toEqual([151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198, 9707, 0, 151645, 198]);
      expect(t.weights).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0]);
      expect(promptTokens({ prompt: "Hi" }, { tokenizer: qwen, template: "chatml" })).toEqual(t.tokens.slice(0, 9));
    },
  );

  test.skipIf(!qwenDir)("multi-turn: only assistant turns and their <|im_end|> are trained", () => {
    const t = tokenizeExample({ messages: conversation }, { tokenizer: qwen, template: "chatml", cutoffLength: 512 });
    expect(trainedRuns(qwen, t.tokens, t.weights)).toEqual(["Hello!<|im_end|>", " It is 4.\n\nDone. 🎉<|im_end|>"]);
    expect(qwen.decode(t.tokens.filter((_, i) => t.weights[i] === 0))).not.toMatch(/Hello|Done/);
  });

  test.skipIf(!qwenDir)("segment tokens join to exactly the whole rendered text's tokens", () => {
    const conversations: ChatMessage[][] = [
      conversation,
      [
        { role: "user", content: "  leading spaces and trailing newline\n" },
        { role: "assistant", content: "<think>\nreasoning\n</think>\n\nanswer  " },
        { role: "user", content: "¿Qué? 数字 123456" },
        { role: "assistant", content: "'s 've   \t tabs" },
      ],
      [
        { role: "assistant", content: "first" },
        { role: "user", content: "then" },
      ],
    ];
    for (const messages of conversations) {
      const t = tokenizeExample({ messages }, { tokenizer: qwen, template: "chatml", cutoffLength: 4096 });
      const whole = qwen.applyChatTemplate(messages, { template: BUILTIN_TEMPLATES.chatml.source });
      expect(t.tokens).toEqual(qwen.encode(whole));
      expect(qwen.decode(t.tokens)).toBe(whole);
    }
  });

  test.skipIf(!qwenDir)(
    "a reply starting with a newline: the prompt keeps its ids, as the model sees them when it generates",
    () => {
      const messages = [
        { role: "user", content: "Hi" },
        { role: "assistant", content: "\n<think>\nhm\n</think>\n\nHello" },
      ];
      const t = tokenizeExample({ messages }, { tokenizer: qwen, template: "chatml", cutoffLength: 64 });
      const whole = qwen.applyChatTemplate(messages, { template: BUILTIN_TEMPLATES.chatml.source });
      // Whole, "assistant\n" + "\n" is one token "\n\n"; but generation starts after "assistant\n".
      expect(qwen.encode(whole)).toContain(271);
      const prompt = promptTokens({ messages }, { tokenizer: qwen, template: "chatml" });
      expect(prompt.at(-1)).toBe(198);
      expect(t.tokens.slice(0, prompt.length)).toEqual(prompt);
      expect(qwen.decode(t.tokens)).toBe(whole);
      expect(trainedRuns(qwen, t.tokens, t.weights)).toEqual(["\n<think>\nhm\n</think>\n\nHello<|im_end|>"]);
    },
  );

  test.skipIf(!qwenDir)("promptTokens leaves out a final assistant turn and opens the assistant's", () => {
    const before = conversation.slice(0, -1);
    const prompt = promptTokens({ messages: conversation }, { tokenizer: qwen, template: "chatml" });
    expect(qwen.decode(prompt)).toBe(
      qwen.applyChatTemplate(before, { template: BUILTIN_TEMPLATES.chatml.source, addGenerationPrompt: true }),
    );
    const t = tokenizeExample({ messages: conversation }, { tokenizer: qwen, template: "chatml", cutoffLength: 512 });
    expect(t.tokens.slice(0, prompt.length)).toEqual(prompt);
  });

  test.skipIf(!qwenDir)("addEos adds EOS after the end marker, trained (for models that stop at EOS)", () => {
    const t = tokenizeExample(
      { prompt: "Hi", completion: "Hello!" },
      { tokenizer: qwen, template: "chatml", cutoffLength: 64, addEos: true },
    );
    expect(t.tokens.slice(-3)).toEqual([151645, 151643, 198]);
    expect(t.weights.slice(-3)).toEqual([1, 1, 0]);
  });

  test.skipIf(!qwenDir)("plain on byte-level BPE: a merge across the boundary keeps the prompt's own ids", () => {
    const t = tokenizeExample(
      { prompt: "Hello wor", completion: "ld is big" },
      { tokenizer: qwen, template: "plain", cutoffLength: 64 },
    );
    expect(qwen.encode("Hello world is big")).toEqual([9707, 1879, 374, 2409]);
    expect(t.tokens).toEqual([9707, 4099, 507, 374, 2409, 151643]);
    expect(t.weights).toEqual([0, 0, 1, 1, 1, 1]);
  });

  test.skipIf(!qwenDir)("the fixture's own template is not prefix-stable: the error names the row", () => {
    expect(() =>
      tokenizeDataset([{ prompt: "Hi", completion: "Hello!" }], {
        tokenizer: qwen,
        template: "tokenizer",
        cutoffLength: 64,
      }),
    ).toThrow(/^tokenizeDataset: row 0: template "tokenizer" is not prefix-stable at message 1/);
  });
});

describe("tokenizeDataset", () => {
  const rows: SftRow[] = [
    { prompt: "1+1?", completion: "2" },
    { prompt: "A long prompt that fills the whole cutoff by itself", completion: "x" },
    { messages: [{ role: "user", content: "no reply" }] },
    { prompt: "3+4?", completion: "<think> 3+4=7 </think> 7 and a long tail to cut" },
  ];
  const options = { tokenizer: tiny, template: "plain", cutoffLength: 16 } as const;

  test("cuts the end, drops rows with no assistant token left, reports", () => {
    const full = rows.map((row) =>
      "prompt" in row ? tokenizeExample(row, { ...options, cutoffLength: 512 }).fullLength : 4,
    );
    const { examples, report } = tokenizeDataset(rows, options);
    expect(examples.map((e) => e.row)).toEqual([0, 3]);
    expect(examples.every((e) => e.tokens.length <= 16 && e.tokens.length === e.weights.length)).toBe(true);
    expect(examples[1]!.tokens).toEqual(
      tokenizeExample(rows[3]!, { ...options, cutoffLength: 512 }).tokens.slice(0, 16),
    );
    expect(full[1]).toBeGreaterThan(16);
    expect(full[3]).toBeGreaterThan(16);
    expect(report).toEqual({
      rows: 4,
      cutoffLength: 16,
      truncated: [
        { row: 1, tokens: full[1], kept: 16 },
        { row: 3, tokens: full[3], kept: 16 },
      ],
      dropped: [
        { row: 1, tokens: full[1] },
        { row: 2, tokens: tiny.encode("no reply", { addSpecialTokens: true }).length },
      ],
      maxLength: Math.max(full[1]!, full[3]!),
      meanLength: (full[0]! + full[1]! + report.dropped[1]!.tokens + full[3]!) / 4,
    });
    expect(formatTruncationReport(report)).toBe(
      `2 of 4 rows (50.0%) are longer than cutoffLength 16 and were cut: rows 1, 3 (longest ${report.maxLength} tokens). ` +
        "1 row had no assistant token left and was dropped: row 1. 1 row had no assistant tokens at all and was dropped: row 2.",
    );
  });

  test("a row in neither shape, or a bad field, names the row", () => {
    expect(() => tokenizeDataset([rows[0]!, { question: "?" } as unknown as SftRow], options)).toThrow(
      "tokenizeDataset: row 1: expected {prompt, completion} or {messages}",
    );
    expect(() => tokenizeDataset([{ prompt: "a" } as unknown as SftRow], options)).toThrow(
      /^tokenizeDataset: row 0: "completion" /,
    );
    expect(() => tokenizeDataset([{ messages: [] }], options)).toThrow(
      'tokenizeDataset: row 0: "messages" expected at least one message',
    );
  });

  test("options are checked and named", () => {
    expect(() => tokenizeDataset(rows, { tokenizer: tiny, template: "plain" } as never)).toThrow(OptionsError);
    expect(() => tokenizeDataset(rows, { tokenizer: tiny, template: "plain" } as never)).toThrow(
      /tokenizeDataset: option "cutoffLength"/,
    );
    expect(() => tokenizeDataset(rows, { ...options, cutoff: 3 } as never)).toThrow(/unknown option "cutoff"/);
    expect(() => tokenizeDataset(rows, { ...options, tokenizer: {} } as never)).toThrow(
      /option "tokenizer": must be a Tokenizer/,
    );
    expect(() => tokenizeDataset(rows, { ...options, template: "llama" } as never)).toThrow(
      'tokenizeDataset: unknown template "llama"; expected one of tokenizer, chatml, llama3, gemma, thinking, plain',
    );
    expect(() => tokenizeDataset(rows, { ...options, template: "llama3" })).toThrow(
      /tokenizeDataset: template "llama3" needs/,
    );
  });

  test("no rows", () => {
    const { examples, report } = tokenizeDataset([], options);
    expect(examples).toEqual([]);
    expect(report).toEqual({ rows: 0, cutoffLength: 16, truncated: [], dropped: [], maxLength: 0, meanLength: 0 });
    expect(formatTruncationReport(report)).toBe("No rows.");
  });
});

describe("formatTruncationReport", () => {
  const base: TruncationReport = {
    rows: 2000,
    cutoffLength: 256,
    truncated: [],
    dropped: [],
    maxLength: 180,
    meanLength: 41.25,
  };

  test("nothing cut", () => {
    expect(formatTruncationReport(base)).toBe(
      "All 2,000 rows fit in cutoffLength 256 (mean 41.3 tokens, longest 180 tokens).",
    );
  });

  test("many rows cut: the first ten listed", () => {
    const truncated = Array.from({ length: 12 }, (_, i) => ({ row: i * 7 + 3, tokens: 300 + i, kept: 256 }));
    const report = {
      ...base,
      truncated,
      dropped: [
        { row: 99, tokens: 1410 },
        { row: 500, tokens: 900 },
      ],
      maxLength: 1410,
    };
    expect(formatTruncationReport(report)).toBe(
      "12 of 2,000 rows (0.6%) are longer than cutoffLength 256 and were cut: rows 3, 10, 17, 24, 31, 38, 45, 52, 59, 66 and 2 more " +
        "(longest 1,410 tokens). 2 rows had no assistant token left and were dropped: rows 99, 500.",
    );
  });

  test("a tiny share", () => {
    const report = { ...base, rows: 100_000, truncated: [{ row: 5, tokens: 300, kept: 256 }], maxLength: 300 };
    expect(formatTruncationReport(report)).toBe(
      "1 of 100,000 rows (<0.1%) are longer than cutoffLength 256 and were cut: row 5 (longest 300 tokens).",
    );
  });
});

describe("packExamples", () => {
  const ex = (n: number, first: number) => ({
    tokens: Array.from({ length: n }, (_, i) => first + i),
    weights: Array.from({ length: n }, (_, i) => (i === 0 ? 0 : 1)),
  });

  test("first-fit decreasing, deterministic, with the efficiency", () => {
    const examples = [ex(3, 10), ex(6, 20), ex(2, 30), ex(5, 40), ex(4, 50)];
    const packed = packExamples(examples, { maxLength: 8 });
    // Longest first: 6 → seq 0, 5 → seq 1, 4 → seq 2, 3 → seq 1, 2 → seq 0.
    expect(packed.sequences.map((s) => s.sources)).toEqual([[1, 2], [3, 0], [4]]);
    expect(packed.sequences.map((s) => s.starts)).toEqual([[0, 6], [0, 5], [0]]);
    expect(packed.sequences[0]!.tokens).toEqual([20, 21, 22, 23, 24, 25, 30, 31]);
    expect(packed.efficiency).toBeCloseTo(20 / 24);
    expect(packExamples(examples, { maxLength: 8 })).toEqual(packed);
  });

  test("the first token of each packed example is not trained: it would be predicted from the one before", () => {
    const examples = [
      { tokens: [1, 2, 3], weights: [1, 1, 1] },
      { tokens: [4, 5, 6], weights: [1, 0, 1] },
    ];
    const [seq] = packExamples(examples, { maxLength: 6 }).sequences;
    expect(seq).toEqual({ tokens: [1, 2, 3, 4, 5, 6], weights: [0, 1, 1, 0, 0, 1], sources: [0, 1], starts: [0, 3] });
  });

  test("ties keep input order; one example per sequence when nothing fits", () => {
    const packed = packExamples([ex(3, 0), ex(3, 10), ex(3, 20)], { maxLength: 5 });
    expect(packed.sequences.map((s) => s.sources)).toEqual([[0], [1], [2]]);
    expect(packed.efficiency).toBeCloseTo(9 / 15);
    expect(packExamples([], { maxLength: 5 })).toEqual({ sequences: [], efficiency: 0 });
  });

  test("packs tokenized rows: their weights survive, their boundaries untrained", () => {
    const rows = ["1+1?", "2+2?", "3+3?", "4+4?"].map((prompt, i) => ({
      prompt,
      completion: `<think> ${i} </think> ${2 * i + 2}`,
    }));
    const { examples } = tokenizeDataset(rows, { tokenizer: tiny, template: "plain", cutoffLength: 64 });
    const total = examples.reduce((sum, e) => sum + e.tokens.length, 0);
    const packed = packExamples(examples, { maxLength: total });
    expect(packed.sequences).toHaveLength(1);
    const seq = packed.sequences[0]!;
    expect(seq.weights.reduce((a, b) => a + b, 0)).toBe(
      examples.reduce((sum, e) => sum + e.weights.reduce((a, b) => a + b, 0), 0),
    );
    for (const start of seq.starts) {
      expect(seq.tokens[start]).toBe(tiny.bosTokenId);
      expect(seq.weights[start]).toBe(0);
    }
    expect(seq.tokens).toHaveLength(total);
    expect(packed.efficiency).toBe(1);
  });

  test("forwardBackward sends the packed examples' lengths, and refuses bounds that do not tile", async () => {
    const bodies: { example_lengths: { data: Int32Array } | null }[] = [];
    const model = {
      name: "m",
      client: { call: async (_op: string, body: (typeof bodies)[number]) => bodies.push(body) },
    } as unknown as Model;
    const [packed] = packExamples([ex(3, 0), ex(4, 10)], { maxLength: 8 }).sequences;
    await forwardBackward(model, [packed!, ex(5, 20)], { kind: "cross_entropy" });
    await forwardBackward(model, [ex(5, 20)], { kind: "cross_entropy" });
    expect(bodies.map((b) => b.example_lengths && Array.from(b.example_lengths.data))).toEqual([[4, 3, 5], null]);
    for (const starts of [
      [1, 3],
      [0, 3, 3],
      [0, 7],
    ]) {
      await expect(forwardBackward(model, [{ ...packed!, starts }], { kind: "cross_entropy" })).rejects.toThrow(
        `forwardBackward: example 0: starts must begin at 0 and increase within its 7 tokens, got [${starts.join(", ")}]`,
      );
    }
  });

  test("errors name the example", () => {
    expect(() => packExamples([ex(3, 0), ex(9, 0)], { maxLength: 8 })).toThrow(
      "packExamples: example 1 has 9 tokens, more than maxLength 8; tokenize with cutoffLength ≤ maxLength",
    );
    expect(() => packExamples([{ tokens: [1, 2], weights: [1] }], { maxLength: 8 })).toThrow(
      "packExamples: example 0 has 1 weights for 2 tokens (one per token)",
    );
    expect(() => packExamples([{ tokens: [], weights: [] }], { maxLength: 8 })).toThrow(
      "packExamples: example 0 has no tokens",
    );
    expect(() => packExamples([], { maxLength: 1 })).toThrow(/packExamples: option "maxLength"/);
  });
});
