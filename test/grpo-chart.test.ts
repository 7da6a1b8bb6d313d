/** GRPO's live chart on the real stories260K shows only the metrics a run produces: no accuracy
 * panel without a reward named by option "correctness", no KL panel at β = 0. */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { applyLora } from "../cells-lib/cells/train.ts";
import { type MimeBundle, PLOTLY_MIME, RecordingRenderer, setRenderer } from "../cells-lib/display/index.ts";
import { type GrpoOptions, type GrpoRow, trainGrpo } from "../cells-lib/grpo/trainer.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { correctnessReward } from "../cells-lib/rewards/index.ts";
import type { RewardFn } from "../cells-lib/rl/rewards.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, tempDir, testBridge } from "./helpers.ts";

const root = tempDir("grpo-chart");
const bridge = testBridge("grpo-chart");
let client: BridgeClient;
let modelDir: string;
let tokenizer: Tokenizer;

const prompts: GrpoRow[] = generateArithmetic({ count: 16, seed: 9 }).map((r) => ({
  prompt: formatExample(r).prompt,
  reference: r.answer,
}));
const letters: RewardFn = ({ completion }) => (completion.match(/a/g) ?? []).length / Math.max(1, completion.length);
const small = { groupSize: 4, promptsPerStep: 2, maxNewTokens: 8, lr: 3e-4, seed: 1, steps: 3, showSamplesEvery: 0 };

let recorder: RecordingRenderer;
beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  tokenizer = await loadTokenizer(modelDir);
});
afterAll(() => bridge.stop());
beforeEach(() => {
  recorder = new RecordingRenderer();
  setRenderer(recorder);
});
afterEach(() => setRenderer(undefined));

/** Runs GRPO with its live chart and returns the chart's final figure and text. */
async function chartOf(model: Model, options: Partial<GrpoOptions> & Pick<GrpoOptions, "rewards">) {
  const trainer = await trainGrpo(model, tokenizer, prompts, { ...small, ...options });
  const bundle = recorder.finalBundles().find((b) => PLOTLY_MIME in b) as MimeBundle;
  const figure = bundle[PLOTLY_MIME] as { data: { name: string }[]; layout: { annotations: { text: string }[] } };
  return {
    history: trainer.history,
    traces: figure.data.map((t) => t.name),
    panels: figure.layout.annotations.map((a) => a.text),
    text: bundle["text/plain"] as string,
  };
}

describe("GRPO's live chart", () => {
  it("has no accuracy or KL panel with a custom reward and β = 0", async () => {
    const model = await loadModel(modelDir, { client, name: "chart-custom" });
    const { history, traces, panels, text } = await chartOf(model, {
      rewards: { letters: { fn: letters, weight: 1 } },
      beta: 0,
    });
    expect(history.map((h) => [h.accuracy, h.kl])).toEqual([
      [null, null],
      [null, null],
      [null, null],
    ]);
    expect(traces).toEqual(["reward", "entropy", "clipFraction", "completionLength", "zeroStdFraction", "tokensPerS"]);
    expect(panels).toEqual(traces);
    expect(text).toMatch(/^GRPO: step 3\n/);
    expect(text).not.toMatch(/accuracy|kl|NaN/);
  });

  it("shows accuracy and KL when the run has them", async () => {
    const model = await applyLora(await loadModel(modelDir, { client, name: "chart-full" }), { rank: 4 });
    const { traces } = await chartOf(model, {
      rewards: { letters: { fn: letters, weight: 1 }, right: { fn: correctnessReward(), weight: 1 } },
      correctness: "right",
      beta: 0.04,
    });
    expect(traces).toEqual([
      "reward",
      "accuracy",
      "kl",
      "entropy",
      "clipFraction",
      "completionLength",
      "zeroStdFraction",
      "tokensPerS",
    ]);
  });
});
