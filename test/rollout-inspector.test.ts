/** The rollout inspector (issue 20, item 6): each group's completions with every reward's score,
 * the advantage and the tokens shaded; the values shown are the worker's own log-probs (as its
 * sample op returned them) and the trainer's advantages (as it sent them to forward_backward). */

import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Tensor } from "../cells-lib/bridge/frames.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { RecordingRenderer, setRenderer } from "../cells-lib/display/index.ts";
import { inspectRollouts } from "../cells-lib/grpo/inspect-rollouts.ts";
import { rolloutStep } from "../cells-lib/grpo/rollouts.ts";
import { type GrpoOptions, type GrpoRow, grpoTrainer } from "../cells-lib/grpo/trainer.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import type { RewardFn } from "../cells-lib/rl/rewards.ts";
import { renderNotebookHtml } from "../kernel/html-report.ts";
import { dumpDom } from "./chromium.ts";
import { storiesSuite, tempDir } from "./helpers.ts";

const suite = storiesSuite("rollouts");
const prompts: { prompt: string; reference: string }[] = generateArithmetic({ count: 8, seed: 4 }).map((r) => ({
  prompt: formatExample(r).prompt,
  reference: r.answer,
}));
const G = 4;
const small = { groupSize: G, promptsPerStep: 2, maxNewTokens: 10, lr: 1e-4, seed: 2, steps: 3, showSamplesEvery: 0 };

let recorder: RecordingRenderer;
beforeEach(() => {
  recorder = new RecordingRenderer();
  setRenderer(recorder);
});
afterEach(() => setRenderer(undefined));

interface Wire {
  sample: { logprobs: Tensor<"float32">; lengths: Tensor<"int32">; entropies: Tensor<"float32"> | null }[];
  forwardBackward: { lengths: Tensor<"int32">; loss: { advantages: Tensor<"float32"> } }[];
}

/** Records the bridge traffic the values must match: sample's responses, forward_backward's requests. */
function tap(model: Model): Wire {
  const wire: Wire = { sample: [], forwardBackward: [] };
  const client = model.client as unknown as { call: (op: string, params: unknown, opts?: unknown) => Promise<unknown> };
  const call = client.call.bind(client);
  client.call = async (op, params, opts) => {
    if (op === "forward_backward") wire.forwardBackward.push(params as Wire["forwardBackward"][number]);
    const result = await call(op, params, opts);
    if (op === "sample") wire.sample.push(result as Wire["sample"][number]);
    return result;
  };
  return wire;
}

/** Every reward call the trainer made: completion text → value. */
function recorded(fn: RewardFn<GrpoRow>) {
  const seen = new Map<string, number | null>();
  const wrapped: RewardFn<GrpoRow> = async (ctx) => {
    const v = await fn(ctx);
    seen.set(ctx.completion, v);
    return v;
  };
  return { seen, fn: wrapped };
}

const letters: RewardFn<GrpoRow> = ({ completion }) =>
  (completion.match(/a/g) ?? []).length / Math.max(1, completion.length);
const short: RewardFn<GrpoRow> = ({ completionIds }) => -completionIds.length / 10;

/** data-<name> of every token span, per completion row of the HTML. */
function spanValues(html: string, name: string): number[][] {
  return [...html.matchAll(/<tr>(.*?)<\/tr>/g)]
    .map((row) =>
      [...row[1]!.matchAll(new RegExp(`class="tc-token"[^>]* data-${name}="([^"]*)"`, "g"))].map((m) => Number(m[1])),
    )
    .filter((values) => values.length > 0);
}

async function trainOneStep(name: string, options: Partial<GrpoOptions> = {}) {
  const model = await loadModel(suite.modelDir, { client: suite.client, name });
  const wire = tap(model);
  const a = recorded(letters);
  const b = recorded(short);
  const trainer = await grpoTrainer(model, suite.tokenizer, prompts, {
    ...small,
    rewards: { letters: { fn: a.fn, weight: 1 }, short: { fn: b.fn, weight: 0.5 } },
    display: false,
    ...options,
  });
  await trainer.step();
  return { trainer, wire, seen: { letters: a.seen, short: b.seen } };
}

describe("rolloutStep (what the trainer keeps of a step)", () => {
  const completion = (text: string, logprobs: number[]) => ({
    text,
    tokenIds: logprobs.map((_, i) => 100 + i),
    logprobs,
    stopReason: "stop_token" as const,
  });
  const group = (prompt: string, texts: string[], totals: number[]) => ({
    row: { prompt, reference: "1" },
    promptIds: [1, 2, 3],
    completions: texts.map((t, i) => completion(t, [-0.5 * (i + 1), -1])),
    scores: { totals, values: { r: totals }, stats: {}, problems: [] },
  });

  it("maps each trained completion to the example the loss got, and marks groups left out", () => {
    const [a, b, c] = [
      group("p1", ["x", "y"], [1, 0]),
      group("p2", ["z", "w"], [1, 1]),
      group("p3", ["u", "v"], [0, 1]),
    ];
    const examples = [0.7, -0.7, -0.9, 0.9].map((advantage) => ({ tokens: [1, 2, 3, 4, 5], advantage }));
    const step = rolloutStep({
      step: 5,
      algo: "dapo",
      temperature: 0.7,
      drawn: [a, b, c],
      trained: [a, c], // b's rewards all tie: dynamic sampling left it out
      rewards: [
        [1, 0],
        [0, 1],
      ],
      keep: [
        [true, false],
        [true, true],
      ],
      examples,
    });
    expect(step.groups.map((g) => [g.prompt, g.trained])).toEqual([
      ["p1", true],
      ["p2", false],
      ["p3", true],
    ]);
    expect(step.groups.map((g) => g.completions.map((x) => [x.advantage, x.kept, x.reward]))).toEqual([
      [
        [0.7, true, 1],
        [-0.7, false, 0],
      ],
      [
        [null, false, null],
        [null, false, null],
      ],
      [
        [-0.9, true, 0],
        [0.9, true, 1],
      ],
    ]);
    expect(step.groups[1]!.completions[1]).toMatchObject({
      text: "w",
      logprobs: [-1, -1],
      rewards: { r: 1 },
      total: 1,
    });
  });
});

describe("inspectRollouts", () => {
  it("shows the worker's log-probs, every reward's value and the trainer's advantages (GRPO)", async () => {
    const { trainer, wire, seen } = await trainOneStep("insp-grpo");
    const view = inspectRollouts(trainer);
    expect(view).toMatchObject({ step: 1, algo: "grpo", shade: "logprob", rewardNames: ["letters", "short"] });
    expect(view.groups).toHaveLength(2);

    const [sampled] = wire.sample;
    const [fb] = wire.forwardBackward;
    const completions = view.groups.flatMap((g) => g.completions);
    expect(completions).toHaveLength(2 * G);
    completions.forEach((c, row) => {
      const length = sampled!.lengths.data[row]!;
      // The worker's own numbers, exactly (float32 read back as JS numbers).
      expect(c.tokens.map((t) => t.logprob)).toEqual(sampled!.logprobs.row(row).slice(0, length));
      expect(c.rewards).toEqual({ letters: seen.letters.get(c.text), short: seen.short.get(c.text) });
      // The advantage the loss was given: the same float32 the trainer sent.
      expect(Math.fround(c.advantage as number)).toBe(fb!.loss.advantages.data[row]);
      for (const t of c.tokens) expect(t.advantage).toBe(c.advantage);
    });
    // GRPO's advantages are the group's standardized rewards.
    for (const g of view.groups)
      expect(Math.abs(g.completions.reduce((s, c) => s + (c.advantage as number), 0))).toBeLessThan(1e-9);

    // The HTML carries the same values, token by token, in the order of the completions.
    const html = view.bundle["text/html"] as string;
    expect(spanValues(html, "logprob")).toEqual(completions.map((c) => c.tokens.map((t) => t.logprob)));
    expect(spanValues(html, "advantage")).toEqual(completions.map((c) => c.tokens.map(() => c.advantage)));
    expect(html).toContain("tokens shaded by log-prob");
    // Shown once, with a text form whose tables keep their column names.
    expect(recorder.outputs).toHaveLength(1);
    const text = view.bundle["text/plain"] as string;
    expect(text.split("\n")[0]).toBe("GRPO step 1: 2 groups (tokens shaded in the HTML form)");
    expect(text.split("\n")[2]).toMatch(
      /^ {2}# +letters +short +total {2}advantage {2}mean log p {2}lowest log p {2}completion$/,
    );
    expect(text.split("\n")[3]).toMatch(/^ {2}-( {2}-+){7}$/);
  }, 120_000);

  it("shows PPO's per-token advantages as the trainer sent them", async () => {
    const { trainer, wire } = await trainOneStep("insp-ppo", { algo: "ppo" });
    const view = inspectRollouts(trainer, { shade: "advantage", display: false });
    const fb = wire.forwardBackward[0]!;
    const lengths = [...fb.lengths.data];
    // forward_backward's per-token values: one per token of each sequence, prompt included.
    let offset = 0;
    const perSequence = lengths.map((n) => {
      const values = [...fb.loss.advantages.data.subarray(offset, offset + n)];
      offset += n;
      return values;
    });
    const completions = view.groups.flatMap((g) => g.completions);
    completions.forEach((c, i) => {
      const promptLength = lengths[i]! - c.tokens.length;
      const sent = perSequence[i]!.slice(promptLength);
      expect(c.tokens.map((t) => Math.fround(t.advantage!))).toEqual(sent);
    });
    expect(spanValues(view.bundle["text/html"] as string, "advantage")).toEqual(
      completions.map((c) => c.tokens.map((t) => t.advantage)),
    );
    expect(view.bundle["text/html"]).toContain("tokens shaded by advantage");
  }, 120_000);

  it("shades by the entropy the worker reported for each sampled token, with recordEntropy", async () => {
    const { trainer, wire } = await trainOneStep("insp-entropy", { recordEntropy: true });
    const view = inspectRollouts(trainer, { shade: "entropy", display: false });
    const [sampled] = wire.sample;
    const completions = view.groups.flatMap((g) => g.completions);
    completions.forEach((c, row) => {
      const entropies = c.tokens.map((t) => t.entropy!);
      expect(entropies).toEqual(sampled!.entropies!.row(row).slice(0, sampled!.lengths.data[row]!));
      // An entropy over a 512-token vocabulary: in (0, log 512].
      for (const h of entropies) expect(h > 0 && h <= Math.log(512) + 1e-4).toBe(true);
    });
    expect(spanValues(view.bundle["text/html"] as string, "entropy")).toEqual(
      completions.map((c) => c.tokens.map((t) => t.entropy)),
    );
  }, 120_000);

  it("keeps the last keepRollouts steps, and says what it cannot show", async () => {
    const model = await loadModel(suite.modelDir, { client: suite.client, name: "insp-keep" });
    const rewards = { letters: { fn: letters, weight: 1 } };
    const trainer = await grpoTrainer(model, suite.tokenizer, prompts, {
      ...small,
      rewards,
      display: false,
      keepRollouts: 2,
    });
    expect(() => inspectRollouts(trainer)).toThrow(/^inspectRollouts: the trainer has kept no rollouts yet/);
    for (let i = 0; i < 3; i++) await trainer.step();
    expect(trainer.rollouts.map((r) => r.step)).toEqual([2, 3]);
    expect(inspectRollouts(trainer, { step: 2, display: false }).step).toBe(2);
    expect(() => inspectRollouts(trainer, { step: 1 })).toThrow(
      'inspectRollouts: option "step" is 1, but the trainer kept steps 2, 3 (raise keepRollouts to keep more)',
    );
    expect(() => inspectRollouts(trainer, { shade: "entropy" })).toThrow(
      /^inspectRollouts: option "shade" is "entropy", but step 3's completions carry no per-token entropy/,
    );
    expect(() => inspectRollouts(trainer, { shade: "surprise" } as never)).toThrow(/^inspectRollouts: option "shade"/);
    expect(() => inspectRollouts(trainer.rollouts[0]!)).toThrow('inspectRollouts: option "tokenizer" is needed');
    const record = inspectRollouts(trainer.rollouts[0]!, { tokenizer: suite.tokenizer, maxGroups: 1, display: false });
    expect(record.groups).toHaveLength(1);
    expect(record.omittedGroups).toBe(1);
  }, 120_000);

  it("leaves the trainer's samples table with its column names in text form", async () => {
    const model = await loadModel(suite.modelDir, { client: suite.client, name: "insp-samples" });
    const rewards = { letters: { fn: letters, weight: 1 } };
    const trainer = await grpoTrainer(model, suite.tokenizer, prompts, {
      ...small,
      rewards,
      showSamplesEvery: 1,
      steps: 1,
    });
    await trainer.run();
    const samples = recorder.outputs.find((o) => (o.bundle["text/plain"] as string).startsWith("Samples at step 1"))!;
    const [, header, rule, first] = (samples.bundle["text/plain"] as string).split("\n");
    expect(header!.split(/\s{2,}/)).toEqual(["prompt", "reference", "completion", "reward"]);
    expect(rule).toMatch(/^-+( {2}-+){3}$/);
    expect(prompts.some((p) => first!.startsWith(`${p.prompt}  `))).toBe(true);
  }, 120_000);

  it("appears in the HTML report as the notebook shows it", async () => {
    const { trainer } = await trainOneStep("insp-report");
    const view = inspectRollouts(trainer, { display: false });
    const html = renderNotebookHtml({
      cells: [
        {
          cell_type: "code",
          source: "inspectRollouts(trainer)",
          outputs: [{ output_type: "display_data", data: view.bundle, metadata: {} }],
        },
      ],
    });
    const file = path.join(tempDir("insp-report"), "report.html");
    writeFileSync(file, html);
    const dom = await dumpDom(file);
    const shown = [...dom.matchAll(/class="tc-token"[^>]* data-logprob="([^"]*)"/g)].map((m) => Number(m[1]));
    expect(shown).toEqual(view.groups.flatMap((g) => g.completions.flatMap((c) => c.tokens.map((t) => t.logprob))));
    expect(dom).toContain('<div class="thinkcells-rollouts"');
  }, 120_000);
});
