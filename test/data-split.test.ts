import { describe, expect, it } from "vitest";
import { type DatasetRow, dedupe, mulberry32, seededShuffle, splitDataset } from "../cells-lib/data/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

const located = <R>(rows: R[]): DatasetRow<R>[] => rows.map((row, i) => ({ line: i + 1, row }));
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe("dedupe", () => {
  const rows = located([
    { prompt: "a", completion: "1" },
    { prompt: "b", completion: "2" },
    { completion: "1", prompt: "a" },
    { prompt: "a", completion: "3" },
    { prompt: "b", completion: "2" },
  ]);

  it("removes exact duplicates, keeping each row's first occurrence", () => {
    const result = dedupe(rows);
    expect(result.removed).toBe(2);
    expect(result.rows.map((r) => r.line)).toEqual([1, 2, 4]);
    expect(result.rows[0]).toBe(rows[0]);
  });

  it("compares by a key function", () => {
    const byPrompt = dedupe(rows, { key: (row) => row.prompt.toUpperCase() });
    expect(byPrompt).toEqual({ rows: [rows[0], rows[1]], removed: 3 });
    const byPair = dedupe(rows, { key: (row) => [row.prompt, row.completion] });
    expect(byPair.rows.map((r) => r.line)).toEqual([1, 2, 4]);
  });

  it("keeps everything when nothing repeats, and rejects a key that is not a function", () => {
    expect(dedupe(rows.slice(0, 2))).toEqual({ rows: rows.slice(0, 2), removed: 0 });
    expect(() => dedupe(rows, { key: "prompt" as never })).toThrow(
      'dedupe: option "key": expected a function (row) => key',
    );
  });
});

describe("seeded randomness", () => {
  it("mulberry32 repeats its sequence for a seed and stays in [0, 1)", () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = range(1000).map(() => a());
    expect(range(1000).map(() => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(mulberry32(43)()).not.toBe(xs[0]);
    // A fixed value: the sequence must not change between releases or runtimes.
    expect(mulberry32(0)()).toBe(0.26642920868471265);
  });

  it("seededShuffle permutes a copy, reproducibly", () => {
    const items = range(100);
    const shuffled = seededShuffle(items, 7);
    expect(items).toEqual(range(100));
    expect(shuffled).not.toEqual(items);
    expect([...shuffled].sort((x, y) => x - y)).toEqual(items);
    expect(seededShuffle(items, 7)).toEqual(shuffled);
    expect(seededShuffle(items, 8)).not.toEqual(shuffled);
  });
});

describe("splitDataset", () => {
  function expectPartition(split: { train: number[]; validation: number[]; test: number[] }, n: number) {
    const all = [...split.train, ...split.validation, ...split.test];
    expect(all).toHaveLength(n);
    expect(new Set(all).size).toBe(n);
    expect([...all].sort((x, y) => x - y)).toEqual(range(n));
  }

  it("splits 80/15/5 from 500 rows on", () => {
    const split = splitDataset(range(1000));
    expect(split.sizes).toEqual({ train: 800, validation: 150, test: 50 });
    expect(split.fractions).toEqual({ train: 0.8, validation: 0.15, test: 0.05 });
    expect([split.train.length, split.validation.length, split.test.length]).toEqual([800, 150, 50]);
    expectPartition(split, 1000);
    expect(splitDataset(range(500)).sizes).toEqual({ train: 400, validation: 75, test: 25 });
  });

  it("splits 70/20/10 below 500 rows", () => {
    const split = splitDataset(range(499));
    expect(split.fractions).toEqual({ train: 0.7, validation: 0.2, test: 0.1 });
    expect(split.sizes).toEqual({ train: 349, validation: 100, test: 50 });
    expectPartition(split, 499);
    expect(splitDataset(range(100)).sizes).toEqual({ train: 70, validation: 20, test: 10 });
  });

  it("is the same for the same seed and different for another", () => {
    const rows = range(300);
    const a = splitDataset(rows, { seed: 5 });
    expect(splitDataset(rows, { seed: 5 })).toEqual(a);
    expect(splitDataset(rows, { seed: 6 }).test).not.toEqual(a.test);
    expect(splitDataset(rows).test).toEqual(splitDataset(rows, { seed: 0 }).test);
  });

  it("gives every row to exactly one part, whatever the rounding", () => {
    for (const n of [0, 1, 2, 3, 7, 10, 11, 99]) {
      const split = splitDataset(range(n), { seed: n });
      expectPartition(split, n);
      expect(split.sizes.train + split.sizes.validation + split.sizes.test).toBe(n);
    }
    expect(splitDataset(range(3)).sizes).toEqual({ train: 2, validation: 1, test: 0 });
  });

  it("takes explicit fractions, including empty parts", () => {
    expect(splitDataset(range(10), { fractions: { train: 0.5, validation: 0.5, test: 0 } }).sizes).toEqual({
      train: 5,
      validation: 5,
      test: 0,
    });
    expect(splitDataset(range(1000), { fractions: { train: 0.9, validation: 0.05, test: 0.05 } }).sizes).toEqual({
      train: 900,
      validation: 50,
      test: 50,
    });
  });

  it("keeps dataset rows whole", () => {
    const rows = located(range(20).map((i) => ({ prompt: `p${i}`, completion: "c" })));
    const split = splitDataset(rows, { seed: 1 });
    expect(new Set([...split.train, ...split.validation, ...split.test])).toEqual(new Set(rows));
  });

  it("validates fractions and seed", () => {
    expect(() => splitDataset([], { fractions: { train: 0.8, validation: 0.1, test: 0.05 } })).toThrow(OptionsError);
    expect(() => splitDataset([], { fractions: { train: 0.8, validation: 0.1, test: 0.05 } })).toThrow(
      /splitDataset: option "fractions": train \+ validation \+ test must sum to 1, got 0\.95/,
    );
    expect(() => splitDataset([], { fractions: { train: 1.2, validation: -0.2, test: 0 } })).toThrow(
      /option "fractions.train".*option "fractions.validation"/,
    );
    expect(() => splitDataset([], { fractions: { train: 1 } as never })).toThrow(/option "fractions.validation"/);
    expect(() => splitDataset([], { seed: 1.5 })).toThrow(/option "seed"/);
  });
});
