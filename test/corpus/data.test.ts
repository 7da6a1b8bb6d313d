/** Data files that used to load wrong or be reported at the wrong place (issue 13, N7). */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DatasetError, loadDataset } from "../../cells-lib/data/index.ts";
import { tempDir } from "../helpers.ts";

const dir = tempDir("corpus-data");

function file(name: string, content: string | Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** The DatasetError a load rejects with. */
async function failure(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  return (err as Error).message;
}

/** "café" in Latin-1: 0xE9 is not valid UTF-8 there. */
const latin1 = (text: string) => Buffer.from(text, "latin1");

describe("N7: invalid UTF-8 and unclosed CSV quotes are reported where they are", () => {
  it("N7 invalid UTF-8 in a JSONL file names the file and line", async () => {
    const p = file(
      "latin1.jsonl",
      Buffer.concat([
        Buffer.from('{"prompt":"a","completion":"b"}\n\n'),
        latin1('{"prompt":"caf\u00e9","completion":"b"}\n'),
        Buffer.from('{"prompt":"c","completion":"d"}\n'),
      ]),
    );
    expect(await failure(loadDataset(p))).toBe(`${p} line 3: invalid UTF-8 (save the file as UTF-8 text)`);
  });

  it("N7 invalid UTF-8 in a JSON array or a CSV file names the file and line", async () => {
    const json = file(
      "latin1.json",
      latin1('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "caf\u00e9", "completion": "b"}\n]'),
    );
    expect(await failure(loadDataset(json))).toBe(`${json} line 3: invalid UTF-8 (save the file as UTF-8 text)`);
    const csv = file("latin1.csv", latin1("prompt,completion\na,b\nc,d\ncaf\u00e9,e\n"));
    expect(await failure(loadDataset(csv))).toBe(`${csv} line 4: invalid UTF-8 (save the file as UTF-8 text)`);
    // A multi-byte character cut short at the end of the file.
    const cut = file(
      "cut.jsonl",
      Buffer.concat([Buffer.from('{"prompt":"a","completion":"b"}\n{"prompt":"'), Buffer.from("é").subarray(0, 1)]),
    );
    expect(await failure(loadDataset(cut))).toMatch(/cut\.jsonl line 2: invalid UTF-8 /);
  });

  it("N7 an unclosed CSV quote is reported on the line where it opened", async () => {
    const p = file("unclosed.csv", 'prompt,completion\na,b\nc,"d\ne,f\ng,h\n');
    expect(await failure(loadDataset(p))).toBe(`${p} line 3: invalid CSV: the quote opened here is never closed`);
    // Earlier quoted fields of the same record, with line breaks of their own, do not count.
    const q = file("unclosed-later.csv", 'prompt,completion\n\n"a\nb","c ""d""\ne"\n"x\ny",z\n"p\nq","r\ns\n');
    expect(await failure(loadDataset(q))).toBe(`${q} line 9: invalid CSV: the quote opened here is never closed`);
  });
});
