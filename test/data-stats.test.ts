import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import {
  type DatasetRow,
  datasetStats,
  loadGsm8k,
  previewDataset,
  type TokenEncoder,
} from "../cells-lib/data/index.ts";
import { PLOTLY_MIME, RecordingRenderer, setRenderer } from "../cells-lib/display/index.ts";
import { llama2cTokenizer } from "../cells-lib/tokenizer/llama2c.ts";
import type { Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { sharedPath, stories } from "./helpers.ts";

const located = <R>(rows: R[]): DatasetRow<R>[] => rows.map((row, i) => ({ line: i + 1, row }));

const pairs = located([
  { prompt: "ab", completion: "abcd" },
  { prompt: "abc", completion: "a" },
  { prompt: "ab", completion: "abcd" },
  { prompt: "abcdefghij", completion: "é🙂" },
]);

/** One "token" per word. */
const words: TokenEncoder = {
  encode: (text) =>
    text
      .split(/\s+/)
      .filter(Boolean)
      .map((_, i) => i),
};

const chats = located([
  {
    messages: [
      { role: "system", content: "be brief" },
      { role: "user", content: "hi there" },
      { role: "assistant", content: "hello" },
    ],
  },
  {
    messages: [
      { role: "user", content: "a b c" },
      { role: "assistant", content: "x" },
      { role: "user", content: "d" },
      { role: "assistant", content: "y z" },
    ],
  },
]);

describe("datasetStats", () => {
  it("measures each field in characters (code points) without a tokenizer", () => {
    const stats = datasetStats(pairs, { bins: 4 });
    expect(stats.rows).toBe(4);
    expect(stats.duplicates).toBe(1);
    expect(stats.unit).toBe("characters");
    expect(stats.fields).toEqual([
      {
        field: "prompt",
        count: 4,
        min: 2,
        mean: 4.25,
        p50: 2,
        p90: 10,
        p99: 10,
        max: 10,
        histogram: { edges: [2, 5, 8, 11], counts: [3, 0, 1] },
      },
      {
        field: "completion",
        count: 4,
        min: 1,
        mean: 2.75,
        p50: 2,
        p90: 4,
        p99: 4,
        max: 4,
        histogram: { edges: [1, 2, 3, 4, 5], counts: [1, 1, 0, 2] },
      },
    ]);
  });

  it("measures chat turns per role in tokens with a tokenizer", () => {
    const stats = datasetStats(chats, { tokenizer: words });
    expect(stats.unit).toBe("tokens");
    expect(stats.duplicates).toBe(0);
    expect(stats.fields.map(({ field, count, min, mean, max }) => ({ field, count, min, mean, max }))).toEqual([
      { field: "messages.system", count: 1, min: 2, mean: 2, max: 2 },
      { field: "messages.user", count: 2, min: 2, mean: 3, max: 4 },
      { field: "messages.assistant", count: 2, min: 1, mean: 2, max: 3 },
    ]);
  });

  it("counts rows that differ only in key order as duplicates", () => {
    const rows = located([
      { prompt: "p", completion: "c" },
      { completion: "c", prompt: "p" },
      { prompt: "p", completion: "d" },
    ]);
    expect(datasetStats(rows).duplicates).toBe(1);
  });

  it("picks a reproducible sample of example rows, in file order", () => {
    const many = located(Array.from({ length: 50 }, (_, i) => ({ prompt: `p${i}`, completion: "c" })));
    const a = datasetStats(many, { examples: 5, seed: 3 }).examples;
    expect(a).toHaveLength(5);
    expect(datasetStats(many, { examples: 5, seed: 3 }).examples).toEqual(a);
    expect(datasetStats(many, { examples: 5, seed: 4 }).examples).not.toEqual(a);
    expect(a.map((r) => r.line)).toEqual([...a.map((r) => r.line)].sort((x, y) => x - y));
    expect(datasetStats(pairs).examples).toHaveLength(3);
    expect(datasetStats(pairs, { examples: 0 }).examples).toEqual([]);
  });

  it("handles no rows", () => {
    expect(datasetStats([])).toEqual({ rows: 0, duplicates: 0, unit: "characters", fields: [], examples: [] });
  });

  const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "token statistics of GSM8K questions");
  it.skipIf(!gsm8kTest)("takes thinkcells' Tokenizer", async () => {
    expectTypeOf<Tokenizer>().toExtend<TokenEncoder>();
    const tokenizer = llama2cTokenizer(readFileSync(path.join(stories, "tok512.bin")));
    const gsm = await loadGsm8k(gsm8kTest!);
    const stats = datasetStats(gsm.rows.slice(0, 20), { tokenizer });
    const question = stats.fields.find((f) => f.field === "question")!;
    expect(question.count).toBe(20);
    expect(question.max).toBe(Math.max(...gsm.rows.slice(0, 20).map((r) => tokenizer.encode(r.row.question).length)));
  });

  it("explains bad options", () => {
    expect(() => datasetStats(pairs, { bins: 0 })).toThrow(OptionsError);
    expect(() => datasetStats(pairs, { bins: 0 })).toThrow(/datasetStats: option "bins"/);
    expect(() => datasetStats(pairs, { tokenizer: {} as TokenEncoder })).toThrow(
      'datasetStats: option "tokenizer": expected a tokenizer with encode(text) → number[]',
    );
  });
});

describe("previewDataset", () => {
  let recorder: RecordingRenderer;
  beforeEach(() => {
    recorder = new RecordingRenderer();
    setRenderer(recorder);
  });
  afterEach(() => setRenderer(undefined));

  it("shows a table of statistics, a length histogram and example rows", () => {
    const stats = previewDataset(
      { file: "pairs.jsonl", shape: "prompt_completion", rows: pairs },
      { bins: 4, examples: 2 },
    );
    expect(stats.rows).toBe(4);
    const [summary, histogram, examples] = recorder.outputs.map((o) => o.bundle);
    expect(recorder.outputs).toHaveLength(3);

    expect(summary!["text/plain"]).toBe(
      [
        "pairs.jsonl (prompt_completion): 4 rows, 1 exact duplicate; lengths in characters (no tokenizer given)",
        "field       rows  min  mean  p50  p90  p99  max",
        "----------  ----  ---  ----  ---  ---  ---  ---",
        "prompt         4    2  4.25    2   10   10   10",
        "completion     4    1  2.75    2    4    4    4",
      ].join("\n"),
    );

    const figure = histogram![PLOTLY_MIME] as { data: Record<string, unknown>[]; layout: { title: { text: string } } };
    expect(figure.layout.title.text).toBe("length per field (characters)");
    expect(figure.data[0]).toMatchObject({
      type: "bar",
      name: "prompt",
      x: [2, 5, 8],
      y: [3, 0, 1],
      width: 3,
      offset: 0,
    });
    expect(figure.data[1]).toMatchObject({ name: "completion", x: [1, 2, 3, 4], y: [1, 1, 0, 2], width: 1 });

    const exampleText = examples!["text/plain"] as string;
    expect(exampleText.split("\n")[0]).toBe("example rows");
    expect(exampleText.split("\n")[1]).toMatch(/^line\s+prompt\s+completion$/);
    expect(exampleText.split("\n")).toHaveLength(5);
  });

  it("shows chat turns by role, in tokens", () => {
    previewDataset({ file: "chat.jsonl", rows: chats }, { tokenizer: words });
    const summary = recorder.outputs[0]!.bundle["text/plain"] as string;
    expect(summary.split("\n")[0]).toBe("chat.jsonl: 2 rows, 0 exact duplicates; lengths in tokens");
    expect(summary).toContain("messages.assistant");
    const examples = recorder.outputs[2]!.bundle["text/plain"] as string;
    expect(examples).toContain("x↵y z");
  });

  it("names itself in option errors", () => {
    expect(() => previewDataset({ file: "f", rows: pairs }, { examples: -1 })).toThrow(
      /previewDataset: option "examples"/,
    );
  });
});
