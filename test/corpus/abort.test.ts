/** An AbortSignal stops a training cell within one bridge request, not one step (issue 13, N8):
 * each test aborts while a request is in flight and counts the requests sent after it. */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { BridgeClient } from "../../cells-lib/bridge/client.ts";
import { loadModel } from "../../cells-lib/cells/model.ts";
import { discardGradients } from "../../cells-lib/cells/train.ts";
import { arithmeticPreferences, trainDpo } from "../../cells-lib/dpo/index.ts";
import { evaluate } from "../../cells-lib/eval/evaluate.ts";
import { formatExample, generateArithmetic } from "../../cells-lib/reasoning/index.ts";
import { trainSft } from "../../cells-lib/sft/train-sft.ts";
import { loadTokenizer, type Tokenizer } from "../../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, tempDir, testBridge } from "../helpers.ts";

const root = tempDir("corpus-abort");
const bridge = testBridge("corpus-abort");
let client: BridgeClient;
let modelDir: string;
let tokenizer: Tokenizer;

const rows = generateArithmetic({ count: 200, seed: 4 }).map((r) => ({ ...formatExample(r), reference: r.answer }));
const train = rows.slice(0, 64);
// Over 64 rows: validation loss and the evaluation's sampling both take two requests.
const validation = rows.slice(64, 194);

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  tokenizer = await loadTokenizer(modelDir);
});
afterAll(() => bridge.stop());

/** Spies on the client's requests: aborts `controller` right after sending the `nth` request of
 * kind `op` (so it is in flight), and returns the ops sent after that. */
function abortOn(op: string, nth: number, controller: AbortController): () => string[] {
  const send = client.call.bind(client);
  const sent: string[] = [];
  let abortedAt: number | undefined;
  vi.spyOn(client, "call").mockImplementation(((name: string, body: never, options?: { signal?: AbortSignal }) => {
    sent.push(name);
    const result = send(name as never, body, options);
    if (abortedAt === undefined && sent.filter((s) => s === op).length === nth) {
      abortedAt = sent.length;
      controller.abort();
    }
    return result;
  }) as typeof client.call);
  return () => (abortedAt === undefined ? [] : sent.slice(abortedAt));
}

describe("N8: an abort is honoured between micro-batches and sampling chunks", () => {
  afterEach(() => vi.restoreAllMocks());
  const quick = { batchSize: 4, lr: 1e-3, display: false, evalMaxNewTokens: 4 } as const;

  it("N8 trainSft stops between the micro-batches of a step", async () => {
    const model = await loadModel(modelDir, { client, name: "abort-micro" });
    const controller = new AbortController();
    const sentAfter = abortOn("forward_backward", 2, controller);
    await expect(
      trainSft(model, tokenizer, { train }, { ...quick, steps: 2, gradientAccumulation: 4, signal: controller.signal }),
    ).rejects.toThrow();
    expect(controller.signal.aborted).toBe(true);
    // The one request after the abort drops the half step's gradients: the next step starts clean.
    expect(sentAfter()).toEqual(["discard_gradients"]);
    expect(await discardGradients(model)).toBe(false);
  });

  it("N8 trainDpo stops between the micro-batches of a step", async () => {
    const model = await loadModel(modelDir, { client, name: "abort-dpo" });
    const controller = new AbortController();
    const sentAfter = abortOn("forward_backward", 2, controller);
    const pairs = arithmeticPreferences({ count: 32, seed: 2 });
    await expect(
      trainDpo(
        model,
        tokenizer,
        { train: pairs },
        {
          batchSize: 4,
          gradientAccumulation: 4,
          steps: 2,
          lora: { rank: 4 },
          display: false,
          signal: controller.signal,
        },
      ),
    ).rejects.toThrow();
    expect(sentAfter()).toEqual(["discard_gradients"]);
    expect(await discardGradients(model)).toBe(false);
  });

  it("N8 trainSft stops between the validation loss's batches", async () => {
    const model = await loadModel(modelDir, { client, name: "abort-val" });
    const controller = new AbortController();
    const sentAfter = abortOn("logprobs", 1, controller);
    await expect(
      trainSft(model, tokenizer, { train, validation }, { ...quick, steps: 1, signal: controller.signal }),
    ).rejects.toThrow();
    expect(controller.signal.aborted).toBe(true);
    expect(sentAfter().length, `sent after the abort: ${sentAfter().join(", ")}`).toBeLessThanOrEqual(1);
  });

  it("N8 trainSft stops between the evaluation's sampling chunks", async () => {
    const model = await loadModel(modelDir, { client, name: "abort-eval" });
    const controller = new AbortController();
    const sentAfter = abortOn("sample", 1, controller);
    await expect(
      trainSft(model, tokenizer, { train, validation }, { ...quick, steps: 1, signal: controller.signal }),
    ).rejects.toThrow();
    expect(controller.signal.aborted).toBe(true);
    expect(sentAfter().length, `sent after the abort: ${sentAfter().join(", ")}`).toBeLessThanOrEqual(1);
  });

  it("N8 evaluate stops between its sampling chunks", async () => {
    const model = await loadModel(modelDir, { client, name: "abort-evaluate" });
    const controller = new AbortController();
    const sentAfter = abortOn("sample", 1, controller);
    await expect(
      evaluate(model, tokenizer, validation.slice(0, 6), { batchSize: 2, maxNewTokens: 4, signal: controller.signal }),
    ).rejects.toThrow();
    expect(controller.signal.aborted).toBe(true);
    expect(sentAfter().length, `sent after the abort: ${sentAfter().join(", ")}`).toBeLessThanOrEqual(1);
  });
});
