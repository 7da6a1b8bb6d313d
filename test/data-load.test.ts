import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, expectTypeOf, it } from "vitest";
import {
  type ChatRow,
  DatasetError,
  type Gsm8kRow,
  loadDataset,
  loadGsm8k,
  loadMath500,
} from "../cells-lib/data/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { sharedPath, tempDir } from "./helpers.ts";

const dir = tempDir("data-load");

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

const jsonl = (rows: unknown[]) => `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`;

/** The message a promise rejects with. */
async function failure(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return (err as Error).message;
}

describe("file formats", () => {
  it("reads JSONL with each row's line, skipping blank lines", async () => {
    const p = file("pc.jsonl", '{"prompt":"1+1=","completion":"2"}\n\n{"prompt":"2+2=","completion":"4"}\r\n');
    const ds = await loadDataset(p, { shape: "prompt_completion" });
    expect(ds).toEqual({
      file: p,
      shape: "prompt_completion",
      rows: [
        { line: 1, row: { prompt: "1+1=", completion: "2" } },
        { line: 3, row: { prompt: "2+2=", completion: "4" } },
      ],
    });
  });

  it("reads a JSON array, each row keeping the line its element starts on", async () => {
    const text = [
      "[",
      '  {"prompt": "a", "chosen": "b", "rejected": "c"},',
      "  {",
      '    "prompt": "brackets ] and { in \\"strings\\"",',
      '    "chosen": "x", "rejected": "y"',
      '  }, {"prompt": "p", "chosen": "q", "rejected": "r"}',
      "]",
    ].join("\n");
    const ds = await loadDataset(file("pref.json", text));
    expect(ds.shape).toBe("preference");
    expect(ds.rows.map((r) => r.line)).toEqual([2, 3, 6]);
    expect(ds.rows[1]!.row).toEqual({ prompt: 'brackets ] and { in "strings"', chosen: "x", rejected: "y" });
  });

  it("reads CSV with quoted commas and line breaks, numbering rows by the line they start on", async () => {
    const text = 'instruction,input,output\nAdd,"1, 2",3\n\nWrite a poem,,"Roses,\nviolets\n"\nEcho,hi,hi\n';
    const ds = await loadDataset(file("alpaca.csv", text), { shape: "alpaca" });
    expect(ds.rows).toEqual([
      { line: 2, row: { instruction: "Add", input: "1, 2", output: "3" } },
      { line: 4, row: { instruction: "Write a poem", input: "", output: "Roses,\nviolets\n" } },
      { line: 7, row: { instruction: "Echo", input: "hi", output: "hi" } },
    ]);
  });

  it("counts CRLF lines in CSV correctly", async () => {
    const ds = await loadDataset(file("crlf.csv", 'prompt,answer\r\n"two\r\nlines",1\r\nx,2\r\n'));
    expect(ds.shape).toBe("rl");
    expect(ds.rows.map((r) => r.line)).toEqual([2, 4]);
  });

  it("accepts a byte-order mark", async () => {
    const ds = await loadDataset(file("bom.csv", "\uFEFFprompt,completion\na,b\n"));
    expect(ds.rows).toEqual([{ line: 2, row: { prompt: "a", completion: "b" } }]);
  });

  it("names the file and line of malformed JSON", async () => {
    const p = file("broken.jsonl", '{"prompt":"a","completion":"b"}\n{"prompt":"a",}\n');
    const message = await failure(loadDataset(p));
    expect(message).toMatch(new RegExp(`^${escapeRegExp(p)} line 2: invalid JSON: .*position`));

    const q = file("broken.json", '[\n  {"prompt": "a"},\n  {"prompt" "b"}\n]');
    expect(await failure(loadDataset(q))).toMatch(new RegExp(`^${escapeRegExp(q)} line 3: invalid JSON: `));
    const truncated = file("truncated.json", '[\n  {"prompt": "a"},\n');
    expect(await failure(loadDataset(truncated))).toMatch(
      /truncated\.json line 3: invalid JSON: Unexpected end of JSON input/,
    );
  });

  it("explains malformed CSV with its line", async () => {
    const p = file("ragged.csv", "prompt,completion\na,b\nc,d,e\n");
    expect(await failure(loadDataset(p))).toMatch(/ragged\.csv line 3: invalid CSV: Invalid Record Length/);
  });

  it("rejects empty files, files without rows, non-arrays and unknown extensions", async () => {
    expect(await failure(loadDataset(file("empty.jsonl", "")))).toMatch(/empty\.jsonl is empty$/);
    expect(await failure(loadDataset(file("blank.json", " \n\n")))).toMatch(/blank\.json is empty$/);
    expect(await failure(loadDataset(file("none.json", "[]")))).toMatch(/none\.json has no rows$/);
    expect(await failure(loadDataset(file("header.csv", "prompt,completion\n")))).toMatch(/header\.csv has no rows$/);
    expect(await failure(loadDataset(file("obj.json", '{"prompt": "a"}')))).toMatch(
      /obj\.json: expected a JSON array of rows, got an object/,
    );
    expect(await failure(loadDataset(file("rows.txt", "a")))).toMatch(
      /rows\.txt: cannot tell the format from the extension "\.txt"; expected \.jsonl, \.json or \.csv/,
    );
    expect(await failure(loadDataset(path.join(dir, "missing.jsonl")))).toMatch(/missing\.jsonl does not exist/);
  });

  it("validates its options", async () => {
    await expect(loadDataset("x.jsonl", { shape: "sft" as "chat" })).rejects.toThrow(OptionsError);
    await expect(loadDataset("x.jsonl", { shape: "sft" as "chat" })).rejects.toThrow(/loadDataset: option "shape"/);
  });
});

describe("row shapes", () => {
  const examples = {
    prompt_completion: { prompt: "p", completion: "c" },
    alpaca: { instruction: "i", output: "o" },
    chat: {
      messages: [
        { role: "system", content: "s" },
        { role: "user", content: "u" },
        { role: "assistant", content: "a" },
      ],
      reasoning_type: "MATH",
    },
    gsm8k: { question: "q", answer: "a\n#### 4" },
    preference: { prompt: "p", chosen: "c", rejected: "r" },
    rl: { prompt: "p", answer: "42" },
  } as const;

  for (const [shape, row] of Object.entries(examples)) {
    it(`detects and loads ${shape} rows`, async () => {
      const ds = await loadDataset(file(`${shape}.jsonl`, jsonl([row, row])));
      expect(ds.shape).toBe(shape);
      expect(ds.rows).toEqual([
        { line: 1, row },
        { line: 2, row },
      ]);
    });
  }

  it("types rows by the shape asked for, and narrows an auto-detected dataset by its shape", async () => {
    const gsm = await loadDataset(file("typed.jsonl", jsonl([examples.gsm8k])), { shape: "gsm8k" });
    expectTypeOf(gsm.rows[0]!.row).toEqualTypeOf<Gsm8kRow>();
    expectTypeOf(gsm.shape).toEqualTypeOf<"gsm8k">();
    const any = await loadDataset(file("auto.jsonl", jsonl([examples.chat])));
    if (any.shape !== "chat") throw new Error("expected chat");
    expectTypeOf(any.rows[0]!.row).toEqualTypeOf<ChatRow>();
    expect(any.rows[0]!.row.messages[2]!.content).toBe("a");
  });

  it("drops keys a shape does not define", async () => {
    const ds = await loadDataset(file("extra.jsonl", jsonl([{ prompt: "p", completion: "c", id: 7 }])));
    expect(ds.rows[0]!.row).toEqual({ prompt: "p", completion: "c" });
  });

  it("says which keys it saw when no shape matches", async () => {
    const message = await failure(loadDataset(file("unknown.jsonl", jsonl([{ text: "t", label: 1 }]))));
    expect(message).toContain(
      'unknown.jsonl line 1: cannot detect the dataset\'s shape from the first row, which has keys "text", "label"',
    );
    expect(message).toContain("alpaca {instruction, input?, output}");
    expect(message).toContain("pass { shape } to loadDataset");
    expect(await failure(loadDataset(file("array.jsonl", "[1, 2]\n")))).toContain("which has no keys (it is an array)");
  });

  it("lists the first few invalid rows with file, line, field, expectation and value", async () => {
    const rows = [
      { messages: [{ role: "user", content: "hi" }] },
      {
        messages: [
          { role: "user", content: "hi" },
          { role: "bot", content: "hello" },
        ],
      },
      { messages: [{ role: "user", content: 3 }] },
      { messages: [] },
      { messages: [{ role: "user" }], reasoning_type: "math" },
      { messages: "hi" },
      { messages: [{ role: "user", content: "x".repeat(100) }] },
      [1],
      { messages: [{ role: "user", content: null }] },
    ];
    const p = file("chat-bad.jsonl", jsonl(rows));
    const message = await failure(loadDataset(p, { shape: "chat" }));
    expect(message.split("\n")).toEqual([
      `${p}: 7 of 9 rows are not valid chat rows {messages, reasoning_type?}:`,
      `  ${p} line 2: field "messages.1.role": expected one of "system", "user", "assistant", "tool", got "bot"`,
      `  ${p} line 3: field "messages.0.content": expected a string, got 3`,
      `  ${p} line 4: field "messages": expected at least one message, got an array`,
      `  ${p} line 5: field "messages.0.content": expected a string, but it is missing; ` +
        `field "reasoning_type": expected one of "MATH", "CODE", "LOGIC", "PLANNING", "TOOL_USE", "GENERAL", got "math"`,
      `  ${p} line 6: field "messages": expected an array, got "hi"`,
      "  …and 2 more",
    ]);
    const last = await failure(
      loadDataset(
        file(
          "one-bad.jsonl",
          jsonl([{ prompt: "p", completion: "c" }, [1], { prompt: "x".repeat(100), completion: null }]),
        ),
      ),
    );
    expect(last).toContain("one-bad.jsonl line 2: expected an object, got an array");
    expect(last).toContain(`one-bad.jsonl line 3: field "completion": expected a string, got null`);
  });

  it("shortens long values in messages", async () => {
    const rows = [{ messages: [{ role: "z".repeat(100), content: "c" }] }];
    const message = await failure(loadDataset(file("long.jsonl", jsonl(rows)), { shape: "chat" }));
    expect(message).toContain(`got "${"z".repeat(38)}…"`);
  });

  it("raises DatasetError for data problems", async () => {
    await expect(loadDataset(file("err.jsonl", jsonl([{ prompt: 1, completion: "c" }])))).rejects.toBeInstanceOf(
      DatasetError,
    );
  });
});

const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "the GSM8K loader test");
const math500Test = sharedPath("data/math500/test.jsonl", "the MATH-500 loader test");

describe("benchmark loaders", () => {
  it.skipIf(!gsm8kTest)("loads GSM8K's test split with references", async () => {
    const gsm = await loadGsm8k(gsm8kTest!);
    expect(gsm.rows).toHaveLength(1319);
    const first = gsm.rows[0]!;
    expect(first.line).toBe(1);
    expect(first.row.question).toMatch(/^Janet’s ducks lay 16 eggs per day/);
    expect(first.row.answer).toMatch(/\n#### 18$/);
    expect(first.row.reference).toBe("18");
    expect(gsm.rows.every((r) => /^-?\d+$/.test(r.row.reference))).toBe(true);
    // Thousands separators are removed from references.
    const withComma = gsm.rows.find((r) => /#### -?\d{1,3},\d{3}/.test(r.row.answer))!;
    expect(withComma.row.reference).toBe(withComma.row.answer.split("#### ")[1]!.replaceAll(",", ""));
  });

  it.skipIf(!math500Test)("loads MATH-500 with the answer as reference", async () => {
    const math = await loadMath500(math500Test!);
    expect(math.rows).toHaveLength(500);
    expect(math.rows[0]).toEqual({
      line: 1,
      row: {
        problem: expect.stringMatching(/^Convert the point \$\(0,3\)\$ in rectangular coordinates/),
        solution: expect.any(String),
        reference: "\\left( 3, \\frac{\\pi}{2} \\right)",
        subject: "Precalculus",
        level: 2,
        unique_id: "test/precalculus/807.json",
      },
    });
    expect(new Set(math.rows.map((r) => r.row.level))).toEqual(new Set([1, 2, 3, 4, 5]));
  });

  it("reports invalid benchmark rows in the same style", async () => {
    const g = await failure(
      loadGsm8k(
        file(
          "gsm-bad.jsonl",
          jsonl([
            { question: "q", answer: "a\n#### 1,234" },
            { question: "q", answer: "no final answer" },
          ]),
        ),
      ),
    );
    expect(g).toContain(
      'gsm-bad.jsonl line 2: field "answer": expected a solution ending in "#### <number>", got "no final answer"',
    );
    const m = await failure(
      loadMath500(
        file(
          "math-bad.jsonl",
          jsonl([{ problem: "p", solution: "s", answer: "1", subject: "Algebra", level: "3", unique_id: "u" }]),
        ),
      ),
    );
    expect(m).toContain('math-bad.jsonl line 1: field "level": expected a number, got "3"');
  });

  it("parses GSM8K references with commas, signs and decimals", async () => {
    const answers = ["x\n#### 1,234", "y\n#### -5", "z #### 2.5 "];
    const gsm = await loadGsm8k(file("gsm-refs.jsonl", jsonl(answers.map((answer) => ({ question: "q", answer })))));
    expect(gsm.rows.map((r) => r.row.reference)).toEqual(["1234", "-5", "2.5"]);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
