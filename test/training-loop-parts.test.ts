import { describe, expect, it } from "vitest";
import { passAtK } from "../cells-lib/eval/pass-at-k.ts";
import { recommendHyperparams } from "../cells-lib/sft/hyperparams.ts";
import { dataOrder } from "../cells-lib/training/data-order.ts";
import { earlyStopping } from "../cells-lib/training/early-stopping.ts";

describe("dataOrder", () => {
  it("visits every example once per epoch, in a new order each epoch, the same for the same seed", () => {
    const order = dataOrder(10, 7);
    const epoch0 = order.take(0, 10);
    const epoch1 = order.take(10, 10);
    expect([...epoch0].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect([...epoch1].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect(epoch1).not.toEqual(epoch0);
    // Batches straddling an epoch boundary, and a fresh object (a resumed run), agree.
    expect(dataOrder(10, 7).take(8, 4)).toEqual([...epoch0.slice(8), ...epoch1.slice(0, 2)]);
    expect(dataOrder(10, 8).take(0, 10)).not.toEqual(epoch0);
    expect(order.epochAt(25)).toBe(2.5);
    expect(() => dataOrder(0, 1)).toThrow("dataOrder: need at least one example");
  });
});

describe("earlyStopping", () => {
  it("stops after `patience` evaluations without enough improvement", () => {
    const stop = earlyStopping({ patience: 2, mode: "min", minDelta: 0.01 });
    expect(stop.update(1.0)).toBe(false);
    expect(stop.update(0.95)).toBe(false);
    expect(stop.update(0.945)).toBe(false); // improvement below minDelta
    expect(stop.stale).toBe(1);
    expect(stop.update(0.96)).toBe(true);
    expect(stop.best).toBe(0.95);
    const up = earlyStopping({ patience: 1, mode: "max" });
    expect(up.update(0.5)).toBe(false);
    expect(up.update(0.6)).toBe(false);
    expect(up.update(0.6)).toBe(true);
  });
});

describe("recommendHyperparams", () => {
  it("follows the seeds' table", () => {
    expect(recommendHyperparams(50)).toEqual({ loraRank: 16, lr: 3e-4, batchSize: 2, steps: 500, warmupSteps: 50 });
    expect(recommendHyperparams(100)).toEqual({ loraRank: 32, lr: 1e-4, batchSize: 4, steps: 1000, warmupSteps: 100 });
    expect(recommendHyperparams(1000)).toEqual({ loraRank: 32, lr: 1e-4, batchSize: 4, steps: 1000, warmupSteps: 100 });
    expect(recommendHyperparams(2000)).toEqual({ loraRank: 64, lr: 5e-5, batchSize: 8, steps: 2000, warmupSteps: 200 });
    expect(recommendHyperparams(12_000).steps).toBe(3000);
    expect(recommendHyperparams(100_000).steps).toBe(5000);
    expect(() => recommendHyperparams(0)).toThrow("datasetSize must be a positive whole number");
  });
});

describe("passAtK", () => {
  it("is the unbiased estimator", () => {
    expect(passAtK(4, 0, 1)).toBe(0);
    expect(passAtK(4, 1, 1)).toBeCloseTo(0.25);
    // 1 − C(2,2)/C(4,2) = 1 − 1/6
    expect(passAtK(4, 2, 2)).toBeCloseTo(5 / 6);
    expect(passAtK(4, 3, 2)).toBe(1);
    expect(() => passAtK(2, 3, 1)).toThrow("passAtK: need integers");
  });
});
