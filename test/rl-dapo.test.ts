import { describe, expect, it } from "vitest";
import { dynamicSample, isInformative, overlongMask, overlongPenalty } from "../cells-lib/rl/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

describe("DAPO overlong handling", () => {
  it("is 0 before the buffer, linear inside it, −1 beyond maxLength", () => {
    // L_max 100, L_cache 20: free up to 80; 90 → (80 − 90) / 20 = −0.5.
    const penalty = (n: number) => overlongPenalty(n, { maxLength: 100, cacheLength: 20 });
    expect([0, 80, 81, 90, 100, 101, 5000].map(penalty)).toEqual([0, 0, -0.05, -0.5, -1, -1, -1]);
  });

  it("rejects a buffer wider than maxLength and bad lengths", () => {
    expect(() => overlongPenalty(1, { maxLength: 10, cacheLength: 11 })).toThrow(OptionsError);
    expect(() => overlongPenalty(1, { maxLength: 10, cacheLength: 11 })).toThrow(
      /cacheLength must not exceed maxLength/,
    );
    expect(() => overlongPenalty(-1, { maxLength: 10, cacheLength: 5 })).toThrow(/length must be finite/);
  });

  it("masks truncated completions out of the loss", () => {
    expect(overlongMask([false, true, false])).toEqual([1, 0, 1]);
    expect(overlongMask([])).toEqual([]);
  });
});

describe("DAPO dynamic sampling", () => {
  it("calls a group informative when 0 < #correct < G, or when rewards differ", () => {
    expect(isInformative([true, false, false])).toBe(true);
    expect(isInformative([true, true])).toBe(false);
    expect(isInformative([false, false])).toBe(false);
    expect(isInformative([1, 0.5, null])).toBe(true);
    expect(isInformative([1, 1, null])).toBe(false);
    expect(isInformative([null, null])).toBe(false);
    expect(isInformative([1])).toBe(false);
    expect(isInformative([])).toBe(false);
  });

  it("draws until the batch is full of informative groups, asking only for what is missing", async () => {
    const mixed = [true, false];
    const tie = [true, true];
    const rounds = [
      [
        { id: "a", ok: mixed },
        { id: "b", ok: tie },
        { id: "c", ok: mixed },
      ],
      // An oversampling draw: "e" is informative but surplus.
      [
        { id: "t", ok: tie },
        { id: "d", ok: mixed },
        { id: "e", ok: mixed },
      ],
    ];
    const asked: number[] = [];
    const result = await dynamicSample({
      draw: async (n) => {
        asked.push(n);
        return rounds[asked.length - 1]!;
      },
      outcomes: (g) => g.ok,
      batchGroups: 3,
      maxDraws: 5,
    });
    expect(asked).toEqual([3, 1]);
    expect(result.groups.map((g) => g.id)).toEqual(["a", "c", "d"]);
    expect(result).toMatchObject({ drawn: 6, filtered: 2, draws: 2, capped: false });
  });

  it("stops at maxDraws and says so", async () => {
    const result = await dynamicSample({
      draw: async (n) => Array.from({ length: n }, (_, i) => (i === 0 ? [0, 1] : [1, 1])),
      outcomes: (g) => g,
      batchGroups: 4,
      maxDraws: 2,
    });
    // Draw 1 asks for 4 (keeps 1), draw 2 asks for 3 (keeps 1).
    expect(result).toEqual({
      groups: [
        [0, 1],
        [0, 1],
      ],
      drawn: 7,
      filtered: 5,
      draws: 2,
      capped: true,
    });
  });

  it("validates its options", async () => {
    const draw = async () => [];
    await expect(dynamicSample({ draw, outcomes: () => [], batchGroups: 0, maxDraws: 1 })).rejects.toThrow(
      /option "batchGroups"/,
    );
    await expect(
      dynamicSample({ draw: 3 as unknown as typeof draw, outcomes: () => [], batchGroups: 1, maxDraws: 1 }),
    ).rejects.toThrow(/draw must be a function/);
  });
});
