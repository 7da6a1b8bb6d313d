import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel, type Model, status } from "../cells-lib/cells/model.ts";
import { logprobs, sample } from "../cells-lib/cells/sample.ts";
import {
  addValueHead,
  applyLora,
  forwardBackward,
  loadState,
  optimStep,
  removeLora,
  resetOptimizer,
  saveState,
  setAdapters,
  values,
} from "../cells-lib/cells/train.ts";
import { lrSchedule } from "../cells-lib/training/schedule.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { additionExamples, storiesSuite, tempDir } from "./helpers.ts";

const root = tempDir("training");
const suite = storiesSuite("training");

const examples = (step: number) => additionExamples(suite.tokenizer, step);

async function steps(model: Model, from: number, count: number): Promise<number[]> {
  const lr = lrSchedule({ kind: "cosine", lr: 5e-3, warmupSteps: 2, totalSteps: 6 });
  const losses: number[] = [];
  for (let s = from; s < from + count; s++) {
    const r = await forwardBackward(model, examples(s), { kind: "cross_entropy" });
    losses.push(r.loss!);
    const o = await optimStep(model, { lr: lr(s), weightDecay: 0.01 });
    expect(o.skipped).toBe(false);
    expect(o.step).toBe(s + 1);
  }
  return losses;
}

describe("training through the bridge", () => {
  it("resumes bit for bit: 6 steps straight = 3 steps, save, a fresh bridge, load, 3 steps", async () => {
    const base = await loadModel(suite.modelDir, { client: suite.client, name: "straight" });
    expect(base.info.lora).toBeNull();
    const straight = await applyLora(base, { rank: 4, dropout: 0.1 });
    expect(straight.info.lora).toMatchObject({ rank: 4, alpha: 8, dropout: 0.1, targets: "all-linear" });
    expect((await removeLora(straight)).info.lora).toBeNull();
    await applyLora(straight, { rank: 4, dropout: 0.1 });
    const expected = await steps(straight, 0, 6);

    const first = await applyLora(await loadModel(suite.modelDir, { client: suite.client, name: "resumed" }), {
      rank: 4,
      dropout: 0.1,
    });
    const resumed = await steps(first, 0, 3);
    const saved = await saveState(first, path.join(root, "state"));
    expect(saved.step).toBe(3);
    expect(saved.files).toEqual(["state.json", "state.safetensors"]);

    // A fresh bridge: kill this one, start another, load the base model and the state.
    await suite.client.shutdown();
    suite.client = await suite.bridge.connect();
    const fresh = await loadModel(suite.modelDir, { client: suite.client, name: "resumed" });
    expect(fresh.info.trainable_parameters).toBe(fresh.info.parameters); // no adapters yet
    expect((await loadState(fresh, path.join(root, "state"))).step).toBe(3);
    resumed.push(...(await steps(fresh, 3, 3)));
    expect(resumed).toEqual(expected); // exact, not approximately
    expect(expected[5]!).toBeLessThan(expected[0]!);
  });

  it("resets the optimizer for a new phase, keeping the weights", async () => {
    const model = await removeLora(await loadModel(suite.modelDir, { client: suite.client, name: "reset" }));
    await steps(model, 0, 2);
    const [before] = await logprobs(model, [examples(0)[0]!.tokens]);
    await resetOptimizer(model);
    const [after] = await logprobs(model, [examples(0)[0]!.tokens]);
    expect(after).toEqual(before);
    // The step count starts again, as for a new optimizer.
    await steps(model, 0, 1);
  });

  it("reports trainable vs total parameters, and full fine-tuning stays available", async () => {
    const model = await loadModel(suite.modelDir, { client: suite.client, name: "counts" });
    const lora = await applyLora(model, { rank: 2, targets: ["q_proj", "v_proj"] });
    // stories260K: 5 layers; q_proj 64→64, v_proj 64→32 (4 KV heads × 8).
    expect(lora.info.trainable_parameters).toBe(5 * (2 * (64 + 64) + 2 * (64 + 32)));
    expect(lora.info.parameters).toBe(260032 + lora.info.trainable_parameters);
    const s = await status(suite.client);
    expect(s.models.find((m) => m.name === "counts")!.trainable_parameters).toBe(lora.info.trainable_parameters);
    const full = await removeLora(lora);
    expect(full.info.trainable_parameters).toBe(260032);
  });

  it("trains the adapter only, which sampling then uses; turning it off gives the base model back", async () => {
    const model = await applyLora(await loadModel(suite.modelDir, { client: suite.client, name: "sft" }), {
      rank: 8,
      dropout: 0,
    });
    const prompt = "12+30?";
    const [before] = await sample(model, suite.tokenizer, prompt, { temperature: 0, maxNewTokens: 12 });
    const losses: number[] = [];
    for (let s = 0; s < 30; s++) {
      losses.push((await forwardBackward(model, examples(s), { kind: "cross_entropy" })).loss!);
      await optimStep(model, { lr: 1e-2 });
    }
    expect(losses.at(-1)!).toBeLessThan(0.6 * losses[0]!);
    const [after] = await sample(model, suite.tokenizer, prompt, { temperature: 0, maxNewTokens: 12 });
    expect(after!.text).not.toBe(before!.text);
    await setAdapters(model, false);
    const [base] = await sample(model, suite.tokenizer, prompt, { temperature: 0, maxNewTokens: 12 });
    expect(base!.text).toBe(before!.text);
    await setAdapters(model, true);
  });

  it("extends the context with RoPE scaling set at load", async () => {
    const model = await loadModel(suite.modelDir, {
      client: suite.client,
      name: "long",
      ropeScaling: { type: "yarn", targetLength: 2048 },
    });
    expect(model.info.max_position_embeddings).toBe(2048);
    expect(model.info.rope_scaling).toMatchObject({ type: "yarn", factor: 4, original_max_position_embeddings: 512 });
    const [c] = await sample(model, suite.tokenizer, "Once upon a time", { temperature: 0, maxNewTokens: 16 });
    expect(c!.tokenIds).toHaveLength(16);
    await expect(loadModel(suite.modelDir, { client: suite.client, ropeScaling: { type: "linear" } })).rejects.toThrow(
      /give factor or targetLength/,
    );
    await expect(
      loadModel(suite.modelDir, { client: suite.client, ropeScaling: { type: "linear", targetLength: 100 } }),
    ).rejects.toThrow(/target_length must be an integer >= max_position_embeddings \(512\)/);
  });

  it("trains LoRA on top of a quantized base (int8 and NF4), and reports the memory it saves", async () => {
    const full = await loadModel(suite.modelDir, { client: suite.client, name: "fp32" });
    for (const scheme of ["int8", "nf4"] as const) {
      const q = await loadModel(suite.modelDir, { client: suite.client, name: scheme, quantize: scheme });
      expect(q.info.quantization).toBe(scheme);
      expect(q.info.parameters).toBe(full.info.parameters); // quantized weights still count
      expect(q.info.weight_bytes).toBeLessThan(full.info.weight_bytes);
      const lora = await applyLora(q, { rank: 8, dropout: 0 });
      const losses: number[] = [];
      for (let s = 0; s < 12; s++) {
        losses.push((await forwardBackward(lora, examples(s), { kind: "cross_entropy" })).loss!);
        await optimStep(lora, { lr: 1e-2 });
      }
      expect(losses.at(-1)!).toBeLessThan(losses[0]!);
      const [c] = await sample(lora, suite.tokenizer, "12+30?", { temperature: 0, maxNewTokens: 8 });
      expect(c!.tokenIds).toHaveLength(8);
    }
  });

  it("runs PPO steps with a value head that learns the returns, and resumes it", async () => {
    const model = await addValueHead(
      await applyLora(await loadModel(suite.modelDir, { client: suite.client, name: "ppo" }), { rank: 4, dropout: 0 }),
    );
    expect(model.info.value_head).toBe(true);
    const [c] = await sample(model, suite.tokenizer, "12+30?", { n: 1, maxNewTokens: 10, seed: 3 });
    const tokens = [...c!.promptIds, ...c!.tokenIds];
    const prompt = c!.promptIds.length;
    const mask = tokens.map((_, t) => (t >= prompt ? 1 : 0));
    const oldLogprobs = tokens.map((_, t) => (t >= prompt ? c!.logprobs[t - prompt]! : 0));
    const returns = tokens.map(() => 1); // every state is worth 1: V should move towards it
    const valueLosses: number[] = [];
    for (let s = 0; s < 8; s++) {
      const [v] = await values(model, [tokens]);
      expect(v).toHaveLength(tokens.length - 1);
      const oldValues = [0, ...v!];
      const r = await forwardBackward(model, [{ tokens, mask, oldLogprobs, oldValues, returns, advantage: 0.5 }], {
        kind: "ppo",
        valueCoef: 1,
        valueClip: 10,
      });
      valueLosses.push(r.metrics.value_loss!);
      await optimStep(model, { lr: 5e-2 });
    }
    expect(valueLosses.at(-1)!).toBeLessThan(valueLosses[0]!);
    const [after] = await values(model, [tokens]);
    expect(after!.slice(prompt - 1).every((v) => v > 0.2)).toBe(true);
    await saveState(model, path.join(root, "ppo-state"));
    const fresh = await loadModel(suite.modelDir, { client: suite.client, name: "ppo-fresh" });
    await loadState(fresh, path.join(root, "ppo-state"));
    expect(await values(fresh, [tokens])).toEqual(await values(model, [tokens]));
  });

  it("explains bad training input", async () => {
    const model = await loadModel(suite.modelDir, { client: suite.client, name: "bad" });
    await expect(applyLora(model, { rank: 0 })).rejects.toThrow(OptionsError);
    await expect(applyLora(model, { targets: ["qproj" as never] })).rejects.toThrow(/option "targets/);
    await expect(forwardBackward(model, [{ tokens: [1] }], { kind: "cross_entropy" })).rejects.toThrow(
      /example 0 has 1 token/,
    );
    await expect(
      forwardBackward(model, [{ tokens: [1, 2, 3], weights: [1, 1] }], { kind: "cross_entropy" }),
    ).rejects.toThrow(/example 0: weights has 2 values for 3 tokens/);
    await expect(
      forwardBackward(model, [{ tokens: [1, 2, 3], advantage: 1 }], { kind: "policy_gradient" }),
    ).rejects.toThrow(/no oldLogprobs/);
    await expect(forwardBackward(model, [{ tokens: [1, 2] }, { tokens: [1, 3] }], { kind: "dpo" })).rejects.toThrow(
      /needs LoRA adapters/,
    );
    await expect(optimStep(model, { lr: 1e-3 })).rejects.toThrow(/no gradients to apply/);
    await expect(loadState(model, path.join(root, "nowhere"))).rejects.toThrow(/no training state here/);
  });
});
