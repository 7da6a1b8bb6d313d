/** Reward functions that never give an answer (issue 13, N3): they used to hang the step forever. */
import { describe, expect, it } from "vitest";
import { loadModel } from "../../cells-lib/cells/model.ts";
import { type GrpoRow, grpoTrainer } from "../../cells-lib/grpo/trainer.ts";
import { combineRewards, type RewardContext, RewardError, type RewardFn } from "../../cells-lib/rl/rewards.ts";
import { OptionsError } from "../../cells-lib/util/options.ts";
import { storiesSuite } from "../helpers.ts";

const suite = storiesSuite("corpus-rewards");

const never: RewardFn = () => new Promise<number>(() => {});
const one: RewardFn = () => 1;
const prompts: GrpoRow[] = [{ prompt: "1+1?", reference: "2" }];
const small = { groupSize: 2, promptsPerStep: 1, maxNewTokens: 4, display: false, steps: 5, seed: 1 };
const contexts: RewardContext[] = ["a", "b"].map((completion) => ({
  prompt: "p",
  completion,
  completionIds: [],
  row: {},
  step: 1,
}));

describe("N3: a reward that never resolves times out", () => {
  it("N3 combineRewards names the function, the sample and the time limit", async () => {
    // Only the second sample hangs.
    const second: RewardFn = ({ completion }) => (completion === "b" ? new Promise<number>(() => {}) : 1);
    const scorer = combineRewards({ ok: { fn: one, weight: 1 }, stuck: { fn: second, weight: 1 } });
    const err = await scorer.score(contexts, { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RewardError);
    expect((err as Error).message).toBe(
      'reward "stuck" failed on sample 1 (completion "b"): gave no result within the time limit of 50 ms',
    );

    const skipped = await scorer.score(contexts, { timeoutMs: 50, onError: "skip-sample" });
    expect(skipped.totals).toEqual([2, null]);
    expect(skipped.problems).toEqual([
      { reward: "stuck", sample: 1, message: "gave no result within the time limit of 50 ms" },
    ]);
    await expect(scorer.score(contexts, { timeoutMs: 0 })).rejects.toThrow(OptionsError);
  });

  it("N3 trainer.step() stops with the reward's name, the sample and the limit, or skips the samples", async () => {
    const model = await loadModel(suite.modelDir, { client: suite.client, name: "hung-reward" });
    const stopping = await grpoTrainer(model, suite.tokenizer, prompts, {
      ...small,
      rewardTimeoutMs: 100,
      rewards: { hung: { fn: never, weight: 1 } },
    });
    await expect(stopping.step()).rejects.toThrow(
      /^reward "hung" failed on sample 0 \(completion .*\): gave no result within the time limit of 100 ms$/,
    );

    const skipping = await grpoTrainer(model, suite.tokenizer, prompts, {
      ...small,
      rewardTimeoutMs: 100,
      onRewardError: "skip-sample",
      rewards: { hung: { fn: never, weight: 1 }, one: { fn: one, weight: 1 } },
    });
    const m = await skipping.step();
    expect(m.rewardProblems).toBe(2);
    expect(m.reward).toBeNull();

    await expect(
      grpoTrainer(model, suite.tokenizer, prompts, {
        ...small,
        rewardTimeoutMs: -1,
        rewards: { one: { fn: one, weight: 1 } },
      }),
    ).rejects.toThrow(/grpo: option "rewardTimeoutMs"/);
  }, 60_000);
});
