/** trainSft on the real stories260K: the cold start teaches the `<think>` format (issue 5's
 * acceptance, scaled down to test time), evaluation, checkpoints and exact resume. */
import { readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import type { Tensor } from "../cells-lib/bridge/frames.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { discardGradients, forwardBackward } from "../cells-lib/cells/train.ts";
import { tokenizeDataset } from "../cells-lib/chat/tokenize.ts";
import { splitDataset } from "../cells-lib/data/split.ts";
import { PLOTLY_MIME } from "../cells-lib/display/chart.ts";
import { RecordingRenderer } from "../cells-lib/display/recording.ts";
import { setRenderer } from "../cells-lib/display/renderer.ts";
import { evaluate } from "../cells-lib/eval/evaluate.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { packExamples } from "../cells-lib/sft/packing.ts";
import { trainSft } from "../cells-lib/sft/train-sft.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, tempDir, testBridge } from "./helpers.ts";

const root = tempDir("sft");
const bridge = testBridge("sft");
let client: BridgeClient;
let modelDir: string;
let tokenizer: Tokenizer;

const rows = generateArithmetic({ count: 700, seed: 3 }).map((r) => ({ ...formatExample(r), reference: r.answer }));
const { train, validation, test } = splitDataset(rows, { seed: 0 });

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  tokenizer = await loadTokenizer(modelDir);
});
afterAll(() => bridge.stop());

describe("trainSft", () => {
  it("teaches the <think> format: validation loss falls, format adherence rises", async () => {
    const model = await loadModel(modelDir, { client, name: "sft" });
    const heldOut = test.slice(0, 30);
    const before = await evaluate(model, tokenizer, heldOut, { maxNewTokens: 40 });
    expect(before.formatAccuracy).toBe(0);
    const result = await trainSft(
      model,
      tokenizer,
      { train, validation },
      {
        steps: 60,
        batchSize: 32,
        lr: 2e-3,
        lora: false,
        evalEvery: 20,
        evalRows: 30,
        evalMaxNewTokens: 40,
        display: false,
      },
    );
    expect(result.steps).toBe(60);
    expect(result.history).toHaveLength(60);
    expect(result.evaluations.map((e) => e.step)).toEqual([20, 40, 60]);
    const [first, , last] = result.evaluations;
    expect(last!.valLoss).toBeLessThan(first!.valLoss);
    expect(last!.formatAccuracy).toBeGreaterThanOrEqual(0.9);
    expect(result.truncation.truncated).toEqual([]);
    const after = await evaluate(result.model, tokenizer, heldOut, { maxNewTokens: 40 });
    expect(after.formatAccuracy).toBeGreaterThan(before.formatAccuracy);
    expect(after.details[0]!.completions[0]!.text).toMatch(/^<think> .* <\/think> \d+$/);
  }, 240_000);

  it("resumes from a checkpoint with the same losses as an uninterrupted run", async () => {
    const options = {
      steps: 6,
      batchSize: 8,
      lr: 2e-3,
      lora: false as const,
      evalEvery: 3,
      evalRows: 4,
      evalMaxNewTokens: 8,
      display: false,
      seed: 5,
    };
    const straight = await trainSft(
      await loadModel(modelDir, { client, name: "straight" }),
      tokenizer,
      { train, validation: validation.slice(0, 16) },
      options,
    );

    const store = path.join(root, "checkpoints");
    const checkpoint = { store, every: 3, keepBest: 2, keepLast: 1 };
    const first = await trainSft(
      await loadModel(modelDir, { client, name: "interrupted" }),
      tokenizer,
      { train, validation: validation.slice(0, 16) },
      { ...options, checkpoint },
    );
    expect(first.checkpoints).toEqual(["step-000003", "step-000006"]);
    expect(readdirSync(store).sort()).toEqual(["step-000003", "step-000006"]);

    // A fresh model (as after a lost runtime), resumed from step 3.
    const resumed = await trainSft(
      await loadModel(modelDir, { client, name: "resumed" }),
      tokenizer,
      { train, validation: validation.slice(0, 16) },
      { ...options, checkpoint, resume: "step-000003" },
    );
    expect(resumed.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(resumed.history.map((h) => h.loss)).toEqual(straight.history.map((h) => h.loss));
    expect(resumed.evaluations.map((e) => e.valLoss)).toEqual(straight.evaluations.map((e) => e.valLoss));
  }, 240_000);

  it("stops early, and draws its metrics live", async () => {
    const recording = new RecordingRenderer();
    const previous = setRenderer(recording);
    try {
      const model = await loadModel(modelDir, { client, name: "early" });
      // No evaluation can improve on the first by 10: patience 1 stops at the second.
      const result = await trainSft(
        model,
        tokenizer,
        { train, validation: validation.slice(0, 16) },
        {
          steps: 10,
          batchSize: 4,
          lr: 1e-3,
          evalEvery: 2,
          evalRows: 2,
          evalMaxNewTokens: 4,
          earlyStopping: { patience: 1, minDelta: 10 },
        },
      );
      expect(result.stoppedEarly).toBe(true);
      expect(result.stopped).toMatchObject({ rule: "earlyStopping", step: 4 });
      expect(result.history).toHaveLength(4);
      expect(result.best?.step).toBe(4);
      const [chart] = recording.finalBundles().filter((b) => PLOTLY_MIME in b);
      const figure = chart![PLOTLY_MIME] as { data: { name: string; x: number[] }[] };
      expect(figure.data.find((t) => t.name === "loss")!.x).toEqual([1, 2, 3, 4]);
      expect(figure.data.find((t) => t.name === "valLoss")!.x).toEqual([2, 4]);
    } finally {
      setRenderer(previous);
    }
  }, 120_000);

  it("stops when the gradient norm passes stopWhen.gradNormAbove, saying why, with a checkpoint there", async () => {
    const checkpoint = { store: path.join(root, "stop-checkpoints"), every: 5 };
    const result = await trainSft(
      await loadModel(modelDir, { client, name: "stop" }),
      tokenizer,
      { train },
      {
        steps: 10,
        batchSize: 4,
        lr: 1e-3,
        display: false,
        checkpoint,
        stopWhen: { gradNormAbove: 1e-9 },
      },
    );
    expect(result.history).toHaveLength(1);
    expect(result.stoppedEarly).toBe(true);
    expect(result.stopped).toMatchObject({ rule: "gradNormAbove", step: 1 });
    expect(result.stopped!.message).toMatch(
      /^the gradient norm at step 1, [\d.]+, is above stopWhen.gradNormAbove \(1e-9\)$/,
    );
    expect(result.checkpoints).toEqual(["step-000001"]);
    await expect(
      trainSft(
        await loadModel(modelDir, { client, name: "stop-bad" }),
        tokenizer,
        { train },
        { stopWhen: { gradNormAbove: 0 } },
      ),
    ).rejects.toThrow(/trainSft: option "stopWhen.gradNormAbove"/);
  }, 120_000);

  it("packs examples with their bounds, so each gets the loss it has alone", async () => {
    const model = await loadModel(modelDir, { client, name: "packed" });
    const sent: { lengths: number[]; exampleLengths: number[] | null }[] = [];
    const recorder = new Proxy(client, {
      get(target, prop) {
        const value = Reflect.get(target, prop);
        if (prop !== "call") return typeof value === "function" ? value.bind(target) : value;
        return (op: string, body: Record<string, unknown>) => {
          if (op === "forward_backward") {
            const ints = (t: unknown) => (t ? Array.from((t as Tensor<"int32">).data) : null);
            sent.push({ lengths: ints(body.lengths)!, exampleLengths: ints(body.example_lengths) });
          }
          return (target.call as (op: string, body: unknown) => Promise<unknown>)(op, body);
        };
      },
    });
    await trainSft(
      { ...model, client: recorder },
      tokenizer,
      { train: train.slice(0, 40) },
      {
        steps: 1,
        batchSize: 2,
        cutoffLength: 96,
        packing: true,
        display: false,
      },
    );
    expect(sent).toHaveLength(1);
    const [{ lengths, exampleLengths }] = sent as [(typeof sent)[number]];
    expect(exampleLengths!.length).toBeGreaterThan(lengths.length); // several examples a row
    const ends = (xs: number[]) => xs.map((_, i) => xs.slice(0, i + 1).reduce((a, n) => a + n, 0));
    const exampleEnds = new Set(ends(exampleLengths!));
    expect(ends(lengths).every((e) => exampleEnds.has(e))).toBe(true); // they tile the rows

    // Through the worker: packed examples' loss is their loss alone.
    const examples = tokenizeDataset(train.slice(0, 6), { tokenizer, template: "plain", cutoffLength: 96 }).examples;
    const packed = packExamples(examples, { maxLength: 96 }).sequences;
    expect(packed.length).toBeLessThan(examples.length);
    const numTokens = examples.reduce((s, e) => s + e.weights.slice(1).reduce((a, w) => a + w, 0), 0);
    const loss = { kind: "cross_entropy", numTokens } as const;
    const together = await forwardBackward(model, packed, loss);
    await discardGradients(model);
    const alone = await forwardBackward(model, examples, loss);
    await discardGradients(model);
    expect(together.loss).toBeCloseTo(alone.loss!, 5);
    const seeingEachOther = await forwardBackward(
      model,
      packed.map(({ tokens, weights }) => ({ tokens, weights })),
      loss,
    );
    await discardGradients(model);
    expect(Math.abs(seeingEachOther.loss! - alone.loss!)).toBeGreaterThan(1e-3);
  }, 120_000);

  it("rejects bad options by name", async () => {
    const model = await loadModel(modelDir, { client, name: "bad" });
    await expect(trainSft(model, tokenizer, { train }, { steps: 2, epochs: 1 })).rejects.toThrow(
      'trainSft: give option "steps" or option "epochs", not both',
    );
    await expect(trainSft(model, tokenizer, { train }, { resume: "latest" })).rejects.toThrow(
      'option "resume" needs option "checkpoint"',
    );
    await expect(trainSft(model, tokenizer, { train }, { batchSize: 0 })).rejects.toThrow(
      /trainSft: option "batchSize"/,
    );
    await expect(trainSft(model, tokenizer, { train: [] })).rejects.toThrow("trainSft: data.train is empty");
  });
});
