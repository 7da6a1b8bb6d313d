/** Training faults (issue 13) through the real cells and a real bridge: an update that overflows
 * the weights, a GRPO step whose every loss is non-finite, two clients training one model. */
import { describe, expect, it, vi } from "vitest";
import { BridgeError } from "../../cells-lib/bridge/errors.ts";
import { attachModel, loadModel, type Model } from "../../cells-lib/cells/model.ts";
import { logprobs } from "../../cells-lib/cells/sample.ts";
import { applyLora, forwardBackward, optimStep } from "../../cells-lib/cells/train.ts";
import { grpoTrainer } from "../../cells-lib/grpo/trainer.ts";
import { formatExample, generateArithmetic } from "../../cells-lib/reasoning/index.ts";
import { additionExamples, storiesSuite } from "../helpers.ts";

const suite = storiesSuite("corpus-training");

const examples = (step: number) => additionExamples(suite.tokenizer, step);
const probe = () => examples(0).map((e) => e.tokens);

/** LoRA without dropout: two such models draw nothing and stay twins under the same steps. */
const adapted = async (name: string) =>
  applyLora(await loadModel(suite.modelDir, { client: suite.client, name }), { rank: 4, dropout: 0 });

async function step(model: Model, s: number, lr = 5e-3) {
  await forwardBackward(model, examples(s), { kind: "cross_entropy" });
  return optimStep(model, { lr });
}

describe("training faults", () => {
  it("N1: an update that would leave weights non-finite is rolled back, optimizer state included, and reported skipped", async () => {
    const [bad, twin] = [await adapted("n1-bad"), await adapted("n1-twin")];
    for (const m of [bad, twin]) await step(m, 0);
    const before = await logprobs(bad, probe());
    const r = await step(bad, 1, 1e308);
    expect(r.skipped).toBe(true);
    expect(r.reason).toMatch(/non-finite \(lr 1e\+308.*\): rolled back/);
    expect(r.step).toBe(1);
    expect(await logprobs(bad, probe())).toEqual(before);
    // The next step is the twin's: the moments and the step count were restored with the weights.
    for (const m of [bad, twin]) expect(await step(m, 2)).toMatchObject({ skipped: false, step: 2 });
    expect(await logprobs(bad, probe())).toEqual(await logprobs(twin, probe()));
  });

  it("N2: a GRPO step whose every micro-batch has a non-finite loss is skipped, not an error", async () => {
    const model = await adapted("n2");
    // Dr.GRPO does not divide by the group's std: rewards 0 and 1e308 give advantages of ±5e307,
    // infinite in float32, so the one micro-batch has no finite loss and no backward.
    let calls = 0;
    const huge = () => (calls++ % 2 ? 1e308 : 0);
    const prompts = generateArithmetic({ count: 4, seed: 3 }).map((r) => ({
      prompt: formatExample(r).prompt,
      reference: r.answer,
    }));
    const trainer = await grpoTrainer(model, suite.tokenizer, prompts, {
      algo: "dr_grpo",
      groupSize: 4,
      promptsPerStep: 1,
      maxNewTokens: 8,
      display: false,
      lr: 1e-3,
      seed: 1,
      rewards: { huge: { fn: huge, weight: 1 } },
    });
    const before = await logprobs(model, probe());
    const metrics = await trainer.step();
    expect(metrics).toMatchObject({
      loss: null,
      gradNorm: null,
      skippedUpdates: 1,
      skipReason: expect.stringContaining("non-finite loss"),
    });
    expect(await logprobs(model, probe())).toEqual(before);
  });

  it("C2: a forwardBackward…optimStep cycle belongs to one client until its optimStep or its disconnection", async () => {
    const other = await suite.bridge.connect();
    const mine = await adapted("c2");
    const theirs = await attachModel("c2", other);
    const midCycle = /model 'c2' is mid-cycle for thinkcells pid \d+ \(connection \d+\).*another client/;
    const refused = async (call: Promise<unknown>) => {
      const err = await call.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BridgeError);
      expect(err).toMatchObject({ kind: "bad_input", message: expect.stringMatching(midCycle) });
    };
    await forwardBackward(mine, examples(0), { kind: "cross_entropy" });
    await refused(forwardBackward(theirs, examples(1), { kind: "cross_entropy" }));
    await refused(optimStep(theirs, { lr: 5e-3 }));
    expect(await optimStep(mine, { lr: 5e-3 })).toMatchObject({ skipped: false, step: 1 });
    // Free again: now the other client's cycle, until that client goes (its gradients with it).
    await forwardBackward(theirs, examples(1), { kind: "cross_entropy" });
    await refused(forwardBackward(mine, examples(2), { kind: "cross_entropy" }));
    other.close();
    await vi.waitFor(() => forwardBackward(mine, examples(2), { kind: "cross_entropy" }), {
      timeout: 10_000,
      interval: 50,
    });
    expect(await optimStep(mine, { lr: 5e-3 })).toMatchObject({ skipped: false, step: 2 });
  });
});
