import { describe, expect, it } from "vitest";
import { DEFAULT_REWARD_WEIGHTS } from "../cells-lib/rewards/index.ts";
import { combineRewards, type RewardContext, RewardError, type RewardFn } from "../cells-lib/rl/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

const sample = (completion: string, i = 0): RewardContext<{ id: number }> => ({
  prompt: "2+2?",
  completion,
  completionIds: [...completion].map((c) => c.charCodeAt(0)),
  reference: "4",
  row: { id: i },
  step: 7,
});

describe("combineRewards", () => {
  it("sums weighted values, skips nulls, and reports per-function values and stats", async () => {
    const rewards = combineRewards<{ id: number }>({
      length: { fn: (ctx) => ctx.completion.length, weight: 0.5 },
      hasX: { fn: async (ctx) => (ctx.completion.includes("x") ? 1 : null), weight: 2 },
    });
    const scores = await rewards.score([sample("xx"), sample("yyyy"), sample("x")]);
    // totals: 0.5·2 + 2·1 = 3; 0.5·4 (hasX null) = 2; 0.5·1 + 2·1 = 2.5.
    expect(scores.totals).toEqual([3, 2, 2.5]);
    expect(scores.values).toEqual({ length: [2, 4, 1], hasX: [1, null, 1] });
    // length: mean 7/3; squared deviations 1/9 + 25/9 + 16/9 = 42/9, / 2 = 7/3, std sqrt(7/3) = 1.52752523.
    expect(scores.stats.length!.mean).toBeCloseTo(2.3333333333333335, 12);
    expect(scores.stats.length!.std).toBeCloseTo(1.5275252316519468, 12);
    expect(scores.stats.length!.count).toBe(3);
    expect(scores.stats.hasX).toEqual({ mean: 1, std: 0, count: 2 });
    expect(scores.problems).toEqual([]);
  });

  it("accepts a list of named specs and gives null to a sample no function scored", async () => {
    const rewards = combineRewards([
      { name: "a", fn: () => null, weight: 1 },
      { name: "b", fn: (ctx) => (ctx.step === 7 && ctx.row === 1 ? 4 : null), weight: 0.25 },
    ]);
    const scores = await rewards.score([
      { prompt: "p", completion: "c", completionIds: [], row: 0, step: 7 },
      { prompt: "p", completion: "c", completionIds: [], row: 1, step: 7 },
    ]);
    expect(scores.totals).toEqual([null, 1]);
    expect(scores.stats.a).toEqual({ mean: null, std: null, count: 0 });
    expect(scores.stats.b).toEqual({ mean: 4, std: 0, count: 1 });
  });

  it("scores nothing for no samples", async () => {
    const scores = await combineRewards({ a: { fn: () => 1, weight: 1 } }).score([]);
    expect(scores).toEqual({
      totals: [],
      values: { a: [] },
      stats: { a: { mean: null, std: null, count: 0 } },
      problems: [],
    });
  });

  it("runs the functions of all samples concurrently", async () => {
    // Every call waits until all four calls have started: sequential evaluation would hang.
    let started = 0;
    let release!: () => void;
    const allStarted = new Promise<void>((resolve) => (release = resolve));
    const waiting: RewardFn = async () => {
      if (++started === 4) release();
      await allStarted;
      return 1;
    };
    const scores = await combineRewards({ a: { fn: waiting, weight: 1 }, b: { fn: waiting, weight: 1 } }).score([
      sample("x"),
      sample("y"),
    ]);
    expect(scores.totals).toEqual([2, 2]);
  }, 2000);

  it('with onError "stop", throws a RewardError naming the function, the sample and the completion', async () => {
    const boom = new Error("regex exploded");
    const rewards = combineRewards({
      ok: { fn: () => 1, weight: 1 },
      flaky: { fn: (ctx) => (ctx.completion.startsWith("bad") ? Promise.reject(boom) : 0), weight: 1 },
    });
    const long = `bad   answer\n${"z".repeat(100)}`;
    const error = await rewards
      .score([sample("fine"), sample(long), sample("bad too")], { onError: "stop" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RewardError);
    const e = error as RewardError;
    expect(e.rewardName).toBe("flaky");
    expect(e.sampleIndex).toBe(1);
    expect(e.cause).toBe(boom);
    expect(e.completionExcerpt).toBe(JSON.stringify(`bad answer ${"z".repeat(49)}…`));
    expect(e.message).toBe(`reward "flaky" failed on sample 1 (completion ${e.completionExcerpt}): regex exploded`);
  });

  it("treats NaN, Infinity and non-numbers as failures; stop is the default", async () => {
    const returning = (value: unknown) =>
      combineRewards({ r: { fn: () => value as number, weight: 1 } }).score([sample("x")]);
    await expect(returning(Number.NaN)).rejects.toThrow(
      'reward "r" failed on sample 0 (completion "x"): returned NaN; a reward must be a finite number or null',
    );
    await expect(returning(Number.POSITIVE_INFINITY)).rejects.toThrow(/returned Infinity/);
    await expect(returning(undefined)).rejects.toThrow(/returned undefined/);
    await expect(returning(true)).rejects.toThrow(/returned a boolean \(true\)/);
  });

  it('with onError "skip-sample", nulls the failed sample and lists the problems', async () => {
    const rewards = combineRewards({
      a: { fn: (ctx) => ctx.completion.length, weight: 1 },
      b: {
        fn: (ctx) => {
          if (ctx.completion === "y") throw new Error("no answer tag");
          return ctx.completion === "zz" ? Number.NaN : 10;
        },
        weight: 1,
      },
    });
    const scores = await rewards.score([sample("x"), sample("y"), sample("zz")], { onError: "skip-sample" });
    expect(scores.totals).toEqual([11, null, null]);
    expect(scores.values).toEqual({ a: [1, 1, 2], b: [10, null, null] });
    expect(scores.stats.b).toEqual({ mean: 10, std: 0, count: 1 });
    expect(scores.problems).toEqual([
      { reward: "b", sample: 1, message: "no answer tag" },
      { reward: "b", sample: 2, message: "returned NaN; a reward must be a finite number or null" },
    ]);
  });

  it("reads the functions again on every score, so redefined rewards apply at the next step", async () => {
    let current: RewardFn = () => 1;
    const viaGetter = combineRewards(() => ({ r: { fn: current, weight: 1 } }));
    expect((await viaGetter.score([sample("x")])).totals).toEqual([1]);
    current = () => 2;
    expect((await viaGetter.score([sample("x")])).totals).toEqual([2]);

    const specs = { r: { fn: (() => 1) as RewardFn, weight: 1 } };
    const viaObject = combineRewards(specs);
    specs.r.fn = () => 3;
    expect((await viaObject.score([sample("x")])).totals).toEqual([3]);
  });

  it("explains bad specs and options", async () => {
    expect(() => combineRewards({})).toThrow(OptionsError);
    expect(() => combineRewards({})).toThrow(/at least one reward function/);
    expect(() => combineRewards({ r: { fn: () => 1, weight: Number.NaN } })).toThrow(/option "r.weight"/);
    expect(() => combineRewards({ r: { fn: "nope" as unknown as RewardFn, weight: 1 } })).toThrow(
      /fn must be a reward function/,
    );
    expect(() =>
      combineRewards([
        { name: "r", fn: () => 1, weight: 1 },
        { name: "r", fn: () => 2, weight: 1 },
      ]),
    ).toThrow(/unique/);
    await expect(
      combineRewards({ r: { fn: () => 1, weight: 1 } }).score([], { onError: "ignore" as "stop" }),
    ).rejects.toThrow(/option "onError"/);
  });

  it("exports the seed recipe's default weights", () => {
    expect(DEFAULT_REWARD_WEIGHTS).toEqual({
      correctness: 0.4,
      format: 0.2,
      consistency: 0.2,
      length: 0.1,
      process: 0.1,
    });
  });
});
