/** The RL cells on the real stories260K: every algorithm runs 20 steps with finite metrics;
 * rewards are plain functions that can be replaced between steps; failures are reported;
 * resume is exact. (The learning result itself is measured by the demo, see README.) */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { applyLora } from "../cells-lib/cells/train.ts";
import { stepAdvantages } from "../cells-lib/grpo/advantages.ts";
import { ALGORITHM_SETTINGS, ALGORITHMS } from "../cells-lib/grpo/algorithms.ts";
import { type GrpoRow, type GrpoStepMetrics, grpoTrainer, trainGrpo } from "../cells-lib/grpo/trainer.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { correctnessReward, formatReward } from "../cells-lib/rewards/index.ts";
import type { RewardFn } from "../cells-lib/rl/rewards.ts";
import { trainSft } from "../cells-lib/sft/train-sft.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, tempDir, testBridge } from "./helpers.ts";

const root = tempDir("grpo");
const bridge = testBridge("grpo");
let client: BridgeClient;
let modelDir: string;
let tokenizer: Tokenizer;

const prompts: GrpoRow[] = generateArithmetic({ count: 64, seed: 9 }).map((r) => ({
  prompt: formatExample(r).prompt,
  reference: r.answer,
}));
/** A reward the base story model can move, and that rarely ties: the share of "a"s it writes. */
const letters: RewardFn = ({ completion }) => (completion.match(/a/g) ?? []).length / Math.max(1, completion.length);
const small = { groupSize: 4, promptsPerStep: 4, maxNewTokens: 12, display: false, lr: 3e-4, seed: 1 };

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  tokenizer = await loadTokenizer(modelDir);
});
afterAll(() => bridge.stop());

function expectFinite(history: GrpoStepMetrics[], steps: number) {
  expect(history).toHaveLength(steps);
  for (const h of history) {
    for (const key of [
      "reward",
      "loss",
      "entropy",
      "clipFraction",
      "gradNorm",
      "completionLength",
      "zeroStdFraction",
      "tokensPerS",
      "sampleS",
      "trainS",
    ] as const) {
      expect(Number.isFinite(h[key]), `${key} at step ${h.step}: ${h[key]}`).toBe(true);
    }
  }
}

describe("step advantages (pure)", () => {
  const group = {
    totals: [1, 0, 0, 1],
    correct: [true, false, false, true],
    lengths: [10, 20, 30, 40],
    truncated: [false, false, false, true],
  };
  const ctx = { maxNewTokens: 40, overlongCache: 10, correctnessWeight: 1 };
  it("GRPO normalizes by the group's std; Dr.GRPO only centres", () => {
    const grpo = stepAdvantages([group], { ...ctx, settings: ALGORITHM_SETTINGS.grpo });
    const s = Math.sqrt(1 / 3); // unbiased std of [1,0,0,1]
    expect(grpo.advantages[0]![0]).toBeCloseTo(0.5 / (s + 1e-4));
    expect(stepAdvantages([group], { ...ctx, settings: ALGORITHM_SETTINGS.dr_grpo }).advantages[0]).toEqual([
      0.5, -0.5, -0.5, 0.5,
    ]);
  });
  it("DAPO adds the soft overlong penalty; mask mode drops truncated completions", () => {
    const dapo = stepAdvantages([group], { ...ctx, settings: ALGORITHM_SETTINGS.dapo });
    // L_max 40, L_cache 10: 30 tokens → 0, 40 tokens → −1.
    expect(dapo.rewards[0]).toEqual([1, 0, 0, 0]);
    const masked = stepAdvantages([group], { ...ctx, settings: { ...ALGORITHM_SETTINGS.grpo, overlong: "mask" } });
    expect(masked.keep[0]).toEqual([true, true, true, false]);
  });
  it("GRPO-LEAD rewards short correct answers more and reweights by difficulty", () => {
    const lead = stepAdvantages([group], { ...ctx, settings: ALGORITHM_SETTINGS.grpo_lead });
    const [short, wrong1, wrong2, long] = lead.rewards[0] as [number, number, number, number];
    expect(short).toBeGreaterThan(long);
    expect(wrong1).toBe(-1);
    expect(wrong2).toBe(-1);
  });
});

describe("RL cells on stories260K", () => {
  it.each(ALGORITHMS)(
    "%s runs 20 steps with finite metrics",
    async (algo) => {
      let model = await loadModel(modelDir, { client, name: `algo-${algo}` });
      if (algo === "grpo") model = await applyLora(model, { rank: 4 });
      const trainer = await trainGrpo(model, tokenizer, prompts, {
        ...small,
        algo,
        steps: 20,
        // GRPO also exercises the KL term to the adapter-disabled reference.
        beta: algo === "grpo" ? 0.04 : 0,
        rewards: { letters: { fn: letters, weight: 1 }, correctness: { fn: correctnessReward(), weight: 1 } },
        correctness: "correctness",
      });
      expectFinite(trainer.history, 20);
      if (algo === "grpo") expect(trainer.history.every((h) => Number.isFinite(h.kl))).toBe(true);
      if (algo === "dapo") expect(trainer.history.some((h) => h.groupsDrawn >= h.groupsKept)).toBe(true);
      expect(trainer.history[0]!.rewards.letters!.mean).not.toBeNull();
    },
    180_000,
  );

  it("scores completions at their sampling temperature: the first update is on-policy", async () => {
    const model = await loadModel(modelDir, { client, name: "temperature" });
    const temperatures: unknown[] = [];
    const recorder = new Proxy(client, {
      get(target, prop) {
        const value = Reflect.get(target, prop);
        if (prop !== "call") return typeof value === "function" ? value.bind(target) : value;
        return (op: string, body: { loss?: { temperature?: number } }) => {
          if (op === "forward_backward") temperatures.push(body.loss?.temperature);
          return (target.call as (op: string, body: unknown) => Promise<unknown>)(op, body);
        };
      },
    });
    const trainer = await trainGrpo({ ...model, client: recorder }, tokenizer, prompts, {
      ...small,
      steps: 1,
      temperature: 0.7,
      rewards: { letters: { fn: letters, weight: 1 } },
    });
    expect(temperatures.length).toBeGreaterThan(0);
    expect(temperatures.every((t) => t === 0.7)).toBe(true);
    // sample's log-probs are log_softmax(logits / 0.7), as the loss scores them: every ratio is 1.
    expect(trainer.history[0]!.clipFraction).toBe(0);
  }, 60_000);

  it("uses a redefined reward from the next step on, and reports failing rewards", async () => {
    const model = await loadModel(modelDir, { client, name: "tweak" });
    const calls: string[] = [];
    const first: RewardFn = () => {
      calls.push("first");
      return 1;
    };
    const trainer = await grpoTrainer(model, tokenizer, prompts, {
      ...small,
      steps: 10,
      rewards: { r: { fn: first, weight: 1 } },
    });
    await trainer.step();
    trainer.rewards = {
      r: {
        fn: () => {
          calls.push("second");
          return 0;
        },
        weight: 1,
      },
    };
    const m = await trainer.step();
    expect(calls.filter((c) => c === "first")).toHaveLength(16);
    expect(calls.filter((c) => c === "second")).toHaveLength(16);
    expect(m.reward).toBe(0);

    trainer.rewards = {
      broken: {
        fn: ({ completion }) => {
          throw new Error(`cannot score ${completion.length}`);
        },
        weight: 1,
      },
    };
    await expect(trainer.step()).rejects.toThrow(/reward "broken" failed on sample 0 \(completion .*\): cannot score/);
    const skipping = await grpoTrainer(model, tokenizer, prompts, {
      ...small,
      steps: 10,
      onRewardError: "skip-sample",
      rewards: { nan: { fn: () => Number.NaN, weight: 1 } },
    });
    const skipped = await skipping.step();
    expect(skipped.rewardProblems).toBe(16);
    expect(skipped.reward).toBeNull();
  }, 120_000);

  it("resumes exactly from a checkpoint", async () => {
    const rewards = { letters: { fn: letters, weight: 1 }, format: { fn: formatReward(), weight: 0.5 } };
    const straight = await trainGrpo(await loadModel(modelDir, { client, name: "rl-straight" }), tokenizer, prompts, {
      ...small,
      steps: 4,
      rewards,
    });
    const checkpoint = { store: path.join(root, "rl-checkpoints"), every: 2, keepBest: 2 };
    await trainGrpo(await loadModel(modelDir, { client, name: "rl-first" }), tokenizer, prompts, {
      ...small,
      steps: 4,
      rewards,
      checkpoint,
    });
    const resumed = await trainGrpo(await loadModel(modelDir, { client, name: "rl-resumed" }), tokenizer, prompts, {
      ...small,
      steps: 4,
      rewards,
      checkpoint,
      resume: "step-000002",
    });
    const pick = (h: GrpoStepMetrics[]) => h.map((m) => [m.reward, m.loss, m.completionLength]);
    expect(pick(resumed.history)).toEqual(pick(straight.history));
    // Another trainer is refused, naming both, before it loads anything.
    const sft = trainSft(
      await loadModel(modelDir, { client, name: "rl-as-sft" }),
      tokenizer,
      { train: [{ prompt: "1+1?", completion: "2" }] },
      { steps: 1, checkpoint, resume: "step-000002", display: false },
    );
    await expect(sft).rejects.toThrow(
      'trainSft: checkpoint "step-000002": the checkpoint was saved by grpoTrainer (grpo), not trainSft (sft)',
    );
  }, 120_000);

  it("stops on a stop rule and says why; aborts mid-step", async () => {
    const model = await loadModel(modelDir, { client, name: "rl-stop" });
    const stopped = await trainGrpo(model, tokenizer, prompts, {
      ...small,
      steps: 5,
      rewards: { letters: { fn: letters, weight: 1 } },
      stopWhen: { gradNormAbove: 1e-9 },
    });
    expect(stopped.history).toHaveLength(1);
    expect(stopped.stopped).toMatchObject({ rule: "gradNormAbove", step: 1 });
    expect(stopped.stopped!.message).toMatch(
      /^the gradient norm at step 1, .* is above stopWhen.gradNormAbove \(1e-9\)$/,
    );

    // A reward that aborts: the step stops before its update, and records nothing.
    const trainer = await grpoTrainer(model, tokenizer, prompts, {
      ...small,
      steps: 5,
      rewards: { letters: { fn: letters, weight: 1 } },
    });
    trainer.rewards = {
      abort: {
        fn: () => {
          trainer.abort(new Error("stop button"));
          return 0;
        },
        weight: 1,
      },
    };
    await expect(trainer.run()).rejects.toThrow("stop button");
    expect(trainer.history).toHaveLength(0);
    const controller = new AbortController();
    controller.abort(new Error("signalled"));
    await expect(
      (
        await grpoTrainer(model, tokenizer, prompts, {
          ...small,
          rewards: { letters: { fn: letters, weight: 1 } },
          signal: controller.signal,
        })
      ).step(),
    ).rejects.toThrow("signalled");
  }, 120_000);

  it("names bad options", async () => {
    const model = await loadModel(modelDir, { client, name: "bad-rl" });
    await expect(
      grpoTrainer(model, tokenizer, prompts, { rewards: { r: { fn: letters, weight: 1 } }, beta: 0.1 }),
    ).rejects.toThrow('option "beta" needs LoRA adapters');
    await expect(
      grpoTrainer(model, tokenizer, prompts, { rewards: { r: { fn: letters, weight: 1 } }, groupSize: 0 }),
    ).rejects.toThrow(/grpo: option "groupSize"/);
    await expect(grpoTrainer(model, tokenizer, [], { rewards: { r: { fn: letters, weight: 1 } } })).rejects.toThrow(
      "grpo: no prompts",
    );
    // GRPO-LEAD reads the correctness reward by the name it is given, never by a guess.
    const correctness = { fn: correctnessReward(), weight: 1 };
    await expect(
      grpoTrainer(model, tokenizer, prompts, { algo: "grpo_lead", rewards: { correctness } }),
    ).rejects.toThrow('grpo: GRPO-LEAD needs option "correctness"');
    await expect(
      grpoTrainer(model, tokenizer, prompts, { settings: { lead: true }, rewards: { correctness } }),
    ).rejects.toThrow('GRPO-LEAD needs option "correctness"');
    await expect(
      grpoTrainer(model, tokenizer, prompts, {
        algo: "grpo_lead",
        rewards: { correct: correctness },
        correctness: "correctness",
      }),
    ).rejects.toThrow('grpo: option "correctness" names the reward "correctness", but the rewards are "correct"');
    const renamed = await grpoTrainer(model, tokenizer, prompts, {
      ...small,
      algo: "grpo_lead",
      rewards: { correct: correctness },
      correctness: "correct",
    });
    renamed.rewards = { letters: { fn: letters, weight: 1 } };
    await expect(renamed.step()).rejects.toThrow(
      'option "correctness" names the reward "correct", but the rewards are "letters"',
    );
  });
});
