import { describe, expect, it } from "vitest";
import { lrSchedule } from "../cells-lib/training/schedule.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

describe("learning-rate schedules (Hugging Face's warmup schedules)", () => {
  it("warms up linearly from 0, then holds a constant rate", () => {
    const lr = lrSchedule({ kind: "constant", lr: 1e-3, warmupSteps: 4 });
    expect([0, 1, 2, 3, 4, 100].map(lr)).toEqual([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]);
  });

  it("decays linearly to 0 at totalSteps and stays there", () => {
    const lr = lrSchedule({ kind: "linear", lr: 1, warmupSteps: 2, totalSteps: 10 });
    expect([0, 1, 2, 6, 10, 12].map(lr)).toEqual([0, 0.5, 1, 0.5, 0, 0]);
  });

  it("follows half a cosine, with an optional floor", () => {
    const lr = lrSchedule({ kind: "cosine", lr: 2, warmupSteps: 0, totalSteps: 100 });
    expect(lr(0)).toBe(2);
    expect(lr(50)).toBeCloseTo(1, 12);
    expect(lr(25)).toBeCloseTo(1 + Math.SQRT1_2, 12);
    expect(lr(100)).toBeCloseTo(0, 12);
    const floored = lrSchedule({ kind: "cosine", lr: 2, totalSteps: 100, minLrRatio: 0.1 });
    expect(floored(100)).toBeCloseTo(0.2, 12);
    expect(floored(50)).toBeCloseTo(0.2 + 1.8 * 0.5, 12);
  });

  it("explains bad options", () => {
    expect(() => lrSchedule({ kind: "cosine", lr: 1 })).toThrow(OptionsError);
    expect(() => lrSchedule({ kind: "cosine", lr: 1 })).toThrow(
      'lrSchedule: option "totalSteps": totalSteps is required for linear and cosine schedules',
    );
    expect(() => lrSchedule({ kind: "linear", lr: 1, warmupSteps: 10, totalSteps: 5 })).toThrow(
      /greater than warmupSteps/,
    );
    expect(() => lrSchedule({ lr: -1 })).toThrow(/option "lr"/);
    expect(() => lrSchedule({ lr: 1 })(-1)).toThrow(/non-negative integer/);
  });
});
