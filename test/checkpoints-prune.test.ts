import { describe, expect, it } from "vitest";
import { type CheckpointEntry, choosePruned, metricValue } from "../cells-lib/checkpoints/index.ts";
import type { JsonObject } from "../cells-lib/checkpoints/store.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

/** Step s committed at second s, with `loss` in meta.metrics unless it is undefined. */
function entry(step: number, loss?: number | null, at = step): CheckpointEntry {
  const meta: JsonObject = loss === undefined ? { step } : { step, metrics: { loss } };
  return { name: `step-${String(step).padStart(6, "0")}`, meta, createdAt: new Date(at * 1000) };
}
const pruned = (entries: CheckpointEntry[], options: Parameters<typeof choosePruned>[1]) =>
  choosePruned(entries, options).map((e) => Number(e.meta.step));

describe("choosePruned", () => {
  it("keeps the best K by the metric plus the most recent", () => {
    const entries = [entry(1, 3), entry(2, 1), entry(3, 2), entry(4, 0.5), entry(5, 4)];
    expect(pruned(entries, { keepBest: 2, metric: "loss", mode: "min" })).toEqual([1, 3]);
    expect(pruned(entries, { keepBest: 2, metric: "loss", mode: "max" })).toEqual([2, 3, 4]);
  });

  it("keeps only the latest without a metric, and the keepLast most recent with one", () => {
    const entries = [entry(1, 3), entry(2, 1), entry(3, 2), entry(4, 0.5), entry(5, 4)];
    expect(pruned(entries, {})).toEqual([1, 2, 3, 4]);
    expect(pruned(entries, { keepLast: 3 })).toEqual([1, 2]);
    expect(pruned(entries, { keepBest: 1, metric: "loss", mode: "min", keepLast: 2 })).toEqual([1, 2, 3]);
    expect(pruned(entries, { metric: "loss", mode: "min" })).toEqual([1, 2, 3]);
    expect(pruned(entries, { keepBest: 0, metric: "loss", mode: "min", keepLast: 5 })).toEqual([]);
  });

  it("breaks metric ties towards the more recent checkpoint", () => {
    const entries = [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 5)];
    expect(pruned(entries, { keepBest: 1, metric: "loss", mode: "min" })).toEqual([1, 2]);
    expect(pruned(entries, { keepBest: 2, metric: "loss", mode: "min" })).toEqual([1]);
  });

  it("never ranks checkpoints with missing, null (NaN) or non-numeric metric values", () => {
    const odd: CheckpointEntry = { ...entry(3), meta: { step: 3, metrics: { loss: "low" } } };
    const entries = [entry(1, 2), entry(2, null), odd, entry(4), entry(5, 9)];
    expect(entries.map((e) => metricValue(e, "loss"))).toEqual([2, undefined, undefined, undefined, 9]);
    expect(pruned(entries, { keepBest: 2, metric: "loss", mode: "min" })).toEqual([2, 3, 4]);
    // With no ranked entries at all, only the latest survives.
    expect(pruned([entry(1), entry(2, null)], { keepBest: 3, metric: "loss", mode: "max" })).toEqual([1]);
  });

  it("orders recency by commit time, then step", () => {
    // Step 10 was re-saved after restoring from an earlier checkpoint: it is the latest.
    const entries = [entry(10, undefined, 50), entry(12, undefined, 40), entry(11, undefined, 50)];
    expect(pruned(entries, {})).toEqual([10, 12]);
  });

  it("leaves an empty or small list alone", () => {
    expect(pruned([], { keepBest: 2, metric: "loss", mode: "min" })).toEqual([]);
    expect(pruned([entry(1, 1)], { keepBest: 0, metric: "loss", mode: "min" })).toEqual([]);
  });

  it("explains inconsistent options", () => {
    expect(() => choosePruned([], { keepBest: 2 })).toThrow(OptionsError);
    expect(() => choosePruned([], { keepBest: 2 })).toThrow(
      'choosePruned: option "metric": keepBest needs the metric that ranks checkpoints',
    );
    expect(() => choosePruned([], { metric: "loss" })).toThrow(
      /option "mode": say whether a lower \("min"\) or higher \("max"\) loss is better/,
    );
    expect(() => choosePruned([], { keepLast: 0 })).toThrow(/option "keepLast"/);
    expect(() => choosePruned([], { keep: 1 } as never)).toThrow(/unknown option "keep"/);
  });
});
