/** The playground (issue 20, item 5): base and trained completions side by side, and the trained
 * model's win rate under a reward or a judge, a tie counting half. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Model } from "../cells-lib/cells/model.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { forwardBackward, optimStep } from "../cells-lib/cells/train.ts";
import { RecordingRenderer, setRenderer } from "../cells-lib/display/index.ts";
import { type Judge, type PlaygroundRow, playground } from "../cells-lib/eval/playground.ts";
import { countWins, type Pair, scorePair, winRate } from "../cells-lib/eval/win-rate.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { correctnessReward } from "../cells-lib/rewards/index.ts";
import type { RewardFn } from "../cells-lib/rl/rewards.ts";
import { additionExamples, storiesSuite } from "./helpers.ts";

let recorder: RecordingRenderer;
beforeEach(() => {
  recorder = new RecordingRenderer();
  setRenderer(recorder);
});
afterEach(() => setRenderer(undefined));

const pair = (prompt: string, reference: string, base: string, trained: string): Pair<PlaygroundRow> => ({
  row: { prompt, reference },
  prompt,
  reference,
  base: { text: base, tokenIds: [] },
  trained: { text: trained, tokenIds: [] },
});

describe("win rate (a fixed set, by hand)", () => {
  // The answer after "=" is right or wrong; an empty completion gets no reward (null).
  const exact: RewardFn<PlaygroundRow> = ({ completion, reference }) =>
    completion === "" ? null : Number(completion.split("=").at(-1)!.trim() === reference);
  const fixed = [
    pair("2+3", "5", "2+3=4", "2+3=5"), // trained right, base wrong: win
    pair("3+4", "7", "3+4=7", "3+4=7"), // both right: tie
    pair("4+5", "9", "4+5=9", "4+5=8"), // base right: loss
    pair("1+1", "2", "1+1=3", "1+1=2"), // win
    pair("1+2", "3", "1+2=4", "1+2=5"), // both wrong: tie
    pair("2+2", "4", "", "2+2=4"), // no reward for the base's: undecided
  ];

  it("counts a tie as half and leaves undecided pairs out: (2 + 2/2) / 5 = 0.6", async () => {
    const results = await Promise.all(fixed.map((p) => scorePair(p, { reward: exact })));
    expect(results.map((r) => r.winner)).toEqual(["trained", "tie", "base", "trained", "tie", null]);
    expect(results.map((r) => [r.baseReward, r.trainedReward])).toEqual([
      [0, 1],
      [1, 1],
      [1, 0],
      [0, 1],
      [0, 0],
      [null, 1],
    ]);
    const counts = countWins(results);
    expect(counts).toEqual({ wins: 2, losses: 1, ties: 2, undecided: 1 });
    expect(winRate(counts)).toBe(0.6);
  });

  it("reads a judge's verdicts with the base as a: (2 + 1/2) / 4 = 0.625", async () => {
    const verdicts = ["b", "a", "tie", "b"] as const;
    const seen: string[][] = [];
    const judge: Judge = (prompt, a, b) => {
      seen.push([prompt, a, b]);
      return verdicts[seen.length - 1]!;
    };
    const results = [];
    for (const p of fixed.slice(0, 4)) results.push(await scorePair(p, { judge }));
    expect(seen[0]).toEqual(["2+3", "2+3=4", "2+3=5"]);
    expect(winRate(countWins(results))).toBe(0.625);
    await expect(scorePair(fixed[0]!, { judge: () => "B" as never })).rejects.toThrow(
      'playground: the judge returned "B"; it must return "a", "b" or "tie"',
    );
    expect(winRate({ wins: 0, losses: 0, ties: 0, undecided: 3 })).toBeNull();
  });

  it("names its options in errors", async () => {
    const m = {} as Model;
    await expect(playground(m, m, {} as never, ["x"], {})).rejects.toThrow(
      /^playground: option "reward": give either a reward function \(option reward\) or a judge \(option judge\), not both/,
    );
    await expect(playground(m, m, {} as never, ["x"], { reward: exact, judge: () => "a" })).rejects.toThrow(
      /^playground: option "judge": give either/,
    );
    await expect(
      playground(m, m, {} as never, ["x"], { judge: () => "a", names: { base: "m", trained: "m" } }),
    ).rejects.toThrow(/^playground: option "names": the two names must differ/);
    await expect(playground(m, m, {} as never, ["x"], { judge: () => "a", maxNewToken: 3 } as never)).rejects.toThrow(
      /^playground: unknown option "maxNewToken"/,
    );
  });
});

describe("playground through the worker (stories260K, base and a briefly trained copy)", () => {
  const suite = storiesSuite("playground");
  const prompts: { prompt: string; reference: string }[] = generateArithmetic({ count: 6, seed: 3 }).map((r) => ({
    prompt: formatExample(r).prompt,
    reference: r.answer,
  }));
  const letters: RewardFn<PlaygroundRow> = ({ completion }) => (completion.match(/a/g) ?? []).length;
  const sampling = { maxNewTokens: 12 };

  async function models(): Promise<[Model, Model]> {
    const base = await loadModel(suite.modelDir, { client: suite.client, name: "pg-base" });
    const trained = await loadModel(suite.modelDir, { client: suite.client, name: "pg-trained" });
    for (let step = 0; step < 4; step++) {
      await forwardBackward(trained, additionExamples(suite.tokenizer, step), { kind: "cross_entropy" });
      await optimStep(trained, { lr: 1e-2 });
    }
    return [base, trained];
  }

  it("shows each model's own completions side by side, and the win rate computed by hand from them", async () => {
    const [base, trained] = await models();
    const result = await playground(base, trained, suite.tokenizer, prompts, { reward: letters, ...sampling });

    const own = async (m: Model) =>
      (
        await sample(
          m,
          suite.tokenizer,
          prompts.map((p) => p.prompt),
          { temperature: 0, ...sampling },
        )
      ).map((c) => c.text);
    expect(result.rows.map((r) => r.base)).toEqual(await own(base));
    expect(result.rows.map((r) => r.trained)).toEqual(await own(trained));
    expect(result.rows.some((r) => r.base !== r.trained)).toBe(true);

    // By hand: count the a's of each pair's completions.
    let [wins, losses, ties] = [0, 0, 0];
    for (const r of result.rows) {
      const [b, t] = [r.base, r.trained].map((text) => (text.match(/a/g) ?? []).length) as [number, number];
      if (t > b) wins++;
      else if (t < b) losses++;
      else ties++;
    }
    expect(result).toMatchObject({ wins, losses, ties, undecided: 0, scorer: "reward" });
    expect(result.winRate).toBe((wins + ties / 2) / prompts.length);

    // Shown as one table: the title states the rate; the text form keeps its column names.
    expect(recorder.outputs).toHaveLength(1);
    const text = recorder.outputs[0]!.bundle["text/plain"] as string;
    const [title, header, rule] = text.split("\n");
    expect(title).toBe(
      `trained vs base (reward): win rate ${(100 * result.winRate!).toFixed(1)}% over 6 prompts ` +
        `(${wins} win${wins === 1 ? "" : "s"}, ${losses} loss${losses === 1 ? "" : "es"}, ${ties} tie${ties === 1 ? "" : "s"}; a tie counts half)`,
    );
    expect(header!.split(/\s{2,}/)).toEqual([
      "prompt",
      "reference",
      "base",
      "trained",
      "base reward",
      "trained reward",
      "winner",
    ]);
    expect(rule).toMatch(/^-+( {2}-+){6}$/);
    const html = recorder.outputs[0]!.bundle["text/html"] as string;
    expect(html).toContain(`<th style="text-align:left;white-space:pre-wrap">trained</th>`);
  }, 120_000);

  it("asks a judge, and a correctness reward as GRPO's rewards are written", async () => {
    const [base, trained] = [
      await loadModel(suite.modelDir, { client: suite.client, name: "pg-judge-a" }),
      await loadModel(suite.modelDir, { client: suite.client, name: "pg-judge-b" }),
    ];
    const longer: Judge = (_, a, b) => (b.length > a.length ? "b" : a.length > b.length ? "a" : "tie");
    const judged = await playground(base, trained, suite.tokenizer, prompts, {
      judge: longer,
      names: { base: "stories", trained: "copy" },
      display: false,
      ...sampling,
    });
    // The same weights, greedy: the same completions, every pair a tie.
    expect(judged).toMatchObject({ wins: 0, losses: 0, ties: 6, winRate: 0.5, scorer: "judge" });
    const correct = await playground(base, trained, suite.tokenizer, prompts, {
      reward: correctnessReward(),
      display: false,
      ...sampling,
    });
    expect(correct.rows.map((r) => [r.baseReward, r.trainedReward])).toEqual(prompts.map(() => [0, 0]));
    expect(recorder.outputs).toHaveLength(0);
  }, 120_000);
});
