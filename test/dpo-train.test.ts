/** trainDpo on the real stories260K: DPO lifts validation reward accuracy above 0.5 on a
 * generated preference set (the acceptance, scaled down to test time); the precomputed
 * ("initial") reference gives the bridge's DPO gradient exactly; checkpoints resume exactly. */
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { PLOTLY_MIME } from "../cells-lib/display/chart.ts";
import { RecordingRenderer } from "../cells-lib/display/recording.ts";
import { setRenderer } from "../cells-lib/display/renderer.ts";
import { arithmeticPreferences, trainDpo } from "../cells-lib/dpo/index.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, tempDir, testBridge } from "./helpers.ts";

const LOG2 = Math.log(2);
const root = tempDir("dpo");
const bridge = testBridge("dpo");
let client: BridgeClient;
let modelDir: string;
let tokenizer: Tokenizer;

const rows = arithmeticPreferences({ count: 300, seed: 1 });
const train = rows.slice(0, 200);
const validation = rows.slice(200);

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  tokenizer = await loadTokenizer(modelDir);
});
afterAll(() => bridge.stop());

describe("trainDpo", () => {
  it("lifts validation reward accuracy above 0.5 and the loss below log 2 (LoRA, adapters-off reference), live", async () => {
    const recording = new RecordingRenderer();
    const previous = setRenderer(recording);
    try {
      const model = await loadModel(modelDir, { client, name: "dpo" });
      const result = await trainDpo(
        model,
        tokenizer,
        { train, validation },
        {
          steps: 40,
          batchSize: 8,
          lr: 1e-3,
          beta: 0.1,
          lora: { rank: 8 },
          evalEvery: 20,
          seed: 1,
        },
      );
      expect(result.reference).toBe("adapters");
      expect(result.steps).toBe(40);
      expect(result.pairs).toEqual({ train: 200, validation: 100 });
      expect(result.dropped.train).toEqual([]);
      expect(result.evaluations.map((e) => e.step)).toEqual([0, 20, 40]);
      // Zero-initialised adapters: π = π_ref, every margin 0 (a tie is not a win).
      const [start, , end] = result.evaluations;
      expect(start).toMatchObject({
        step: 0,
        valRewardAccuracy: 0,
        valMargin: 0,
        valChosenReward: 0,
        valRejectedReward: 0,
      });
      expect(start!.valLoss!).toBeCloseTo(LOG2, 12);
      expect(result.history[0]!.loss).toBeCloseTo(LOG2, 6);
      expect(result.history[0]!.margin).toBe(0);
      expect(end!.valRewardAccuracy).toBeGreaterThan(0.5);
      expect(end!.valRewardAccuracy).toBeGreaterThan(start!.valRewardAccuracy!);
      expect(end!.valMargin).toBeGreaterThan(0);
      expect(end!.valChosenReward).toBeGreaterThan(end!.valRejectedReward!);
      expect(end!.valLoss).toBeLessThan(LOG2);
      const lastLosses = result.history.slice(-10).map((h) => h.loss!);
      expect(lastLosses.reduce((a, b) => a + b) / lastLosses.length).toBeLessThan(LOG2);
      expect(result.history.every((h) => !h.skipped && h.gradNorm !== null && h.pairsPerS > 0)).toBe(true);
      // Warmup from 0 over 10% of the steps, then cosine decay.
      expect(result.history.slice(0, 5).map((h) => h.lr)).toEqual([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3]);
      expect(result.best?.step).toBeGreaterThan(0);

      const [chart] = recording.finalBundles().filter((b) => PLOTLY_MIME in b);
      const figure = chart![PLOTLY_MIME] as { data: { name: string; x: number[] }[] };
      const trace = (name: string) => figure.data.find((t) => t.name === name)!;
      for (const name of ["loss", "rewardAccuracy", "margin", "chosenReward", "rejectedReward"])
        expect(trace(name).x, name).toHaveLength(40);
      expect(trace("valRewardAccuracy").x).toEqual([0, 20, 40]);
    } finally {
      setRenderer(previous);
    }
  }, 120_000);

  it("with precomputed reference log-probs, takes the same steps as the bridge's DPO loss", async () => {
    // Dropout 0: the scoring pass and the training pass see the same network.
    const options = {
      steps: 4,
      batchSize: 4,
      gradientAccumulation: 2,
      lr: 1e-3,
      lora: { rank: 4, dropout: 0 },
      evalEvery: 4,
      display: false,
    } as const;
    const data = { train: train.slice(0, 40), validation: validation.slice(0, 20) };
    const bridgeRef = await trainDpo(await loadModel(modelDir, { client, name: "ref-adapters" }), tokenizer, data, {
      ...options,
      reference: "adapters",
    });
    const given = await trainDpo(await loadModel(modelDir, { client, name: "ref-initial" }), tokenizer, data, {
      ...options,
      reference: "initial",
    });
    expect(given.reference).toBe("initial");
    for (const [a, b] of bridgeRef.history.map((h, i) => [h, given.history[i]!] as const)) {
      for (const key of ["loss", "rewardAccuracy", "margin", "chosenReward", "rejectedReward", "gradNorm"] as const) {
        expect(b[key], `step ${a.step} ${key}`).toBeCloseTo(a[key]!, 4);
      }
    }
    expect(given.evaluations.at(-1)!.valLoss).toBeCloseTo(bridgeRef.evaluations.at(-1)!.valLoss!, 4);
  }, 120_000);

  it("fine-tunes every weight against the initial model, and resumes exactly from a checkpoint", async () => {
    const options = { steps: 6, batchSize: 4, lr: 3e-4, lora: false as const, evalEvery: 3, display: false, seed: 2 };
    const data = { train: train.slice(0, 60), validation: validation.slice(0, 20) };
    const straight = await trainDpo(await loadModel(modelDir, { client, name: "full" }), tokenizer, data, options);
    expect(straight.reference).toBe("initial");
    expect(straight.history[0]!.loss).toBeCloseTo(LOG2, 6);
    expect(straight.evaluations.at(-1)!.valLoss).toBeLessThan(LOG2);
    expect(straight.evaluations.at(-1)!.valMargin).toBeGreaterThan(0);

    const store = path.join(root, "checkpoints");
    const checkpoint = { store, every: 3, keepBest: 2, keepLast: 1 };
    const first = await trainDpo(await loadModel(modelDir, { client, name: "interrupted" }), tokenizer, data, {
      ...options,
      checkpoint,
    });
    expect(first.checkpoints).toEqual(["step-000003", "step-000006"]);
    // A fresh model (as after a lost runtime): the reference log-probs come from the checkpoint.
    const resumed = await trainDpo(await loadModel(modelDir, { client, name: "resumed" }), tokenizer, data, {
      ...options,
      checkpoint,
      resume: "step-000003",
    });
    expect(resumed.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(resumed.history.map((h) => h.loss)).toEqual(straight.history.map((h) => h.loss));
    expect(resumed.evaluations.map((e) => e.valMargin)).toEqual(straight.evaluations.map((e) => e.valMargin));
    await expect(
      trainDpo(
        await loadModel(modelDir, { client, name: "resumed-other" }),
        tokenizer,
        { train: train.slice(0, 50) },
        { ...options, checkpoint, resume: "step-000003" },
      ),
    ).rejects.toThrow(/reference log-probs cover 60 training pairs, the data has 50/);
  }, 120_000);

  it("resumes LoRA training exactly (adapters re-created, dropout's random state restored)", async () => {
    const options = { steps: 4, batchSize: 4, lr: 1e-3, lora: { rank: 4 }, display: false, seed: 3 };
    const data = { train: train.slice(0, 40) };
    const straight = await trainDpo(
      await loadModel(modelDir, { client, name: "lora-straight" }),
      tokenizer,
      data,
      options,
    );
    const checkpoint = { store: path.join(root, "lora-checkpoints"), every: 2, keepLast: 2 };
    await trainDpo(await loadModel(modelDir, { client, name: "lora-first" }), tokenizer, data, {
      ...options,
      checkpoint,
    });
    // No `lora` option: the checkpoint brings its adapters back.
    const { lora: _, ...rest } = options;
    const resumed = await trainDpo(await loadModel(modelDir, { client, name: "lora-resumed" }), tokenizer, data, {
      ...rest,
      checkpoint,
      resume: "step-000002",
    });
    expect(resumed.reference).toBe("adapters");
    expect(resumed.history.map((h) => h.loss)).toEqual(straight.history.map((h) => h.loss));
    expect(resumed.evaluations).toEqual([]);
  }, 120_000);

  it("rejects bad options and rows by name", async () => {
    const model = await loadModel(modelDir, { client, name: "bad" });
    const data = { train: train.slice(0, 8) };
    await expect(trainDpo(model, tokenizer, data, { steps: 2, epochs: 1 })).rejects.toThrow(
      'trainDpo: give option "steps" or option "epochs", not both',
    );
    await expect(trainDpo(model, tokenizer, data, { resume: "latest" })).rejects.toThrow(
      'option "resume" needs option "checkpoint"',
    );
    await expect(trainDpo(model, tokenizer, data, { batchSize: 0 })).rejects.toThrow(/trainDpo: option "batchSize"/);
    await expect(trainDpo(model, tokenizer, data, { beta: 0 })).rejects.toThrow(/trainDpo: option "beta"/);
    await expect(trainDpo(model, tokenizer, data, { reference: "base" as never })).rejects.toThrow(
      /trainDpo: option "reference"/,
    );
    await expect(trainDpo(model, tokenizer, data, { lora: false, reference: "adapters" })).rejects.toThrow(
      /option "reference": "adapters" .* needs adapters, but option "lora" is false/,
    );
    // A model without adapters and no `lora`: the adapters-off reference does not exist.
    await expect(trainDpo(model, tokenizer, data, { reference: "adapters", steps: 1, display: false })).rejects.toThrow(
      /needs LoRA adapters .* pass option "lora"/,
    );
    await expect(trainDpo(model, tokenizer, { train: [] })).rejects.toThrow("trainDpo: data.train is empty");
    await expect(trainDpo(model, tokenizer, { train: [{ prompt: "1+1?", chosen: "2" } as never] })).rejects.toThrow(
      /data.train row 0 is not a preference row \{prompt, chosen, rejected\}: "rejected"/,
    );
    await expect(
      trainDpo(model, tokenizer, { train: [{ prompt: "1+1?", chosen: "2", rejected: "2" }] }),
    ).rejects.toThrow(/no training pair is left .* 1 had identical completions/);
  });
});
