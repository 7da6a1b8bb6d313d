/** `trainDpo`: Direct Preference Optimization (arXiv 2305.18290) on (prompt, chosen, rejected)
 * rows as one cell — steps or epochs of pairs, gradient accumulation, a warmup + decay
 * schedule, β, validation reward accuracy and margins, checkpoints and exact resume, a live
 * chart and a progress bar.
 *
 * The reference policy π_ref is one of:
 *   "adapters"  the model with its LoRA adapters off (the frozen base). The bridge's `dpo` loss
 *               computes it on every step; the default when the model has adapters (pass
 *               `lora` to add them).
 *   "initial"   the model as it is when training starts, its sequence log-probs computed once
 *               (with `logprobs`) for every pair and kept. Full fine-tuning needs it (there is
 *               nothing to switch off); with LoRA it makes an SFT-trained adapter the reference.
 *               The bridge's `dpo` loss cannot take given reference log-probs, so this mode
 *               scores the batch first and then trains with the `policy_gradient` loss at ratio 1
 *               and per-sequence advantages ±β·σ(−β·Δ): exactly DPO's gradient. */
import { z } from "zod";
import { BridgeError } from "../bridge/errors.ts";
import type { Model } from "../cells/model.ts";
import { logprobs } from "../cells/sample.ts";
import { forwardBackward, optimStep, setAdapters, type TrainingExample } from "../cells/train.ts";
import type { JsonObject } from "../checkpoints/store.ts";
import { PreferenceRow } from "../data/shapes.ts";
import { ChatTemplateSchema, type ChatTemplate, type TemplateName } from "../sft/templates.ts";
import { tokenizeDataset, type TruncationReport } from "../sft/tokenize.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { applyLoraChoice, batchLoopShape, batchRunShape, batchSchedule, checkLoopOptions, LoraChoice } from "../training/cell-options.ts";
import { TrainingCheckpoints } from "../training/checkpointing.ts";
import { stopIfAborted } from "../training/abort.ts";
import { dataOrder } from "../training/data-order.ts";
import { trainingMonitor } from "../training/monitor.ts";
import { OptionsError, parseOptions } from "../util/options.ts";
import { dpoGradientWeight, dpoMetrics, sequenceLogprob, type DpoMetrics, type PairLogprobs } from "./metrics.ts";

/** A preference row; extra fields (e.g. `reference`, the verifiable answer) are kept out of training. */
export type DpoDataRow = PreferenceRow & { reference?: string };

export const DPO_REFERENCES = ["adapters", "initial"] as const;
export type DpoReference = (typeof DPO_REFERENCES)[number];

const EVAL_METRICS = ["valLoss", "valRewardAccuracy", "valMargin"] as const;
type EvalMetric = (typeof EVAL_METRICS)[number];
const MODE: Record<EvalMetric, "min" | "max"> = { valLoss: "min", valRewardAccuracy: "max", valMargin: "max" };

const TrainDpoOptions = z
  .object({
    /** steps or epochs, batchSize (pairs per micro-batch; each pair is two sequences),
     * gradientAccumulation, lr (default 1e-5), schedule, warmupSteps (default: 10% of the steps),
     * weightDecay, maxGradNorm. */
    ...batchLoopShape({ lr: 1e-5 }),
    /** DPO's β: the strength of the implicit KL to the reference (rewards are β·log-ratios). */
    beta: z.number().positive().default(0.1),
    /** LoRA options to add adapters, false for full fine-tuning; default: train the model as it is. */
    lora: LoraChoice.optional(),
    /** The reference policy (see the module doc); default: "adapters" when the model has LoRA
     * adapters, else "initial". */
    reference: z.enum(DPO_REFERENCES).optional(),
    template: z.union([z.string(), ChatTemplateSchema]).default("plain"),
    /** Longest sequence (prompt + completion) in tokens; longer ones keep their start. */
    cutoffLength: z.number().int().min(2).optional(),
    /** Evaluate on the validation pairs every N steps, before the first and after the last;
     * default: 10 evaluations per run. */
    evalEvery: z.number().int().min(1).optional(),
    /** Sequences per `logprobs` call when scoring (evaluation, reference log-probs). */
    scoreBatchSize: z.number().int().min(2).default(64),
    /** Which evaluation metric ranks checkpoints ("best"). */
    metric: z.enum(EVAL_METRICS).default("valLoss"),
    /** checkpoint, resume, seed, display, signal. */
    ...batchRunShape,
  })
  .strict();
export type TrainDpoOptions = Omit<z.input<typeof TrainDpoOptions>, "template"> & { template?: TemplateName | ChatTemplate };

export interface DpoStepMetrics {
  step: number;
  epoch: number;
  /** Mean −log σ(β·Δ) over the step's pairs, before the update; null when not finite. */
  loss: number | null;
  rewardAccuracy: number | null;
  margin: number | null;
  chosenReward: number | null;
  rejectedReward: number | null;
  lr: number;
  gradNorm: number | null;
  pairsPerS: number;
  skipped: boolean;
}

export interface DpoEvaluation {
  step: number;
  valLoss: number;
  valRewardAccuracy: number;
  valMargin: number;
  valChosenReward: number;
  valRejectedReward: number;
}

export interface DroppedPair {
  row: number;
  reason: "no completion tokens" | "identical completions";
}

export interface DpoResult {
  model: Model;
  steps: number;
  reference: DpoReference;
  history: DpoStepMetrics[];
  /** The first (step 0) is the model before training: margins 0 when π = π_ref. */
  evaluations: DpoEvaluation[];
  best: DpoEvaluation | undefined;
  checkpoints: string[];
  pairs: { train: number; validation: number };
  dropped: { train: DroppedPair[]; validation: DroppedPair[] };
  truncation: { chosen: TruncationReport; rejected: TruncationReport };
  wallS: number;
}

/** One tokenized pair: completion tokens masked 1 (the ones the sequence log-prob sums). */
interface Pair {
  row: number;
  chosen: { tokens: number[]; mask: number[] };
  rejected: { tokens: number[]; mask: number[] };
}

type Options = z.output<typeof TrainDpoOptions>;

export async function trainDpo(
  model: Model,
  tokenizer: Tokenizer,
  data: { train: readonly DpoDataRow[]; validation?: readonly DpoDataRow[] },
  options: TrainDpoOptions = {},
): Promise<DpoResult> {
  const o = parseOptions(TrainDpoOptions, options, "trainDpo");
  checkLoopOptions(o, "trainDpo");
  if (o.lora === false && o.reference === "adapters") {
    throw new OptionsError('trainDpo: option "reference": "adapters" (the model with its LoRA adapters off) needs adapters, but option "lora" is false (full fine-tuning); use reference "initial" or LoRA');
  }
  if (!data?.train?.length) throw new OptionsError("trainDpo: data.train is empty");
  checkRows(data.train, "data.train");
  if (data.validation) checkRows(data.validation, "data.validation");
  const started = Date.now();
  const template = o.template as TemplateName | ChatTemplate;
  const cutoffLength = o.cutoffLength ?? Math.min(512, model.info.max_position_embeddings);

  const trainSet = tokenizePairs(data.train, tokenizer, template, cutoffLength);
  if (trainSet.pairs.length === 0) {
    throw new Error(`trainDpo: no training pair is left to learn from: ${describeDropped(trainSet.dropped)} (cutoffLength ${cutoffLength})`);
  }
  const valSet = tokenizePairs(data.validation ?? [], tokenizer, template, cutoffLength);
  const train = trainSet.pairs;
  const validation = valSet.pairs;

  model = await applyLoraChoice(model, o.lora);

  const { perStep, totalSteps, lr } = batchSchedule(o, train.length, 0.1);
  const evalEvery = o.evalEvery ?? Math.max(1, Math.round(totalSteps / 10));
  const order = dataOrder(train.length, o.seed);
  const checkpoints = o.checkpoint ? new TrainingCheckpoints(o.checkpoint, o.metric, MODE[o.metric]) : undefined;

  let history: DpoStepMetrics[] = [];
  let evaluations: DpoEvaluation[] = [];
  let firstStep = 0;
  let saved: { reference: DpoReference; train?: number[]; validation?: number[] } | undefined;
  if (o.resume && checkpoints) {
    const state = await checkpoints.resume(model, o.resume);
    firstStep = state.step;
    history = state.loop.history as unknown as DpoStepMetrics[];
    evaluations = state.loop.evaluations as unknown as DpoEvaluation[];
    saved = state.loop.dpo as unknown as typeof saved;
  }

  // After resuming: a saved state re-creates its adapters on a model that has none.
  const adapters = await hasAdapters(model);
  const reference: DpoReference = o.reference ?? saved?.reference ?? (adapters ? "adapters" : "initial");
  if (reference === "adapters" && !adapters) {
    throw new OptionsError(
      'trainDpo: option "reference": "adapters" needs LoRA adapters (the reference is the model with them off) and the model has none; ' +
        'pass option "lora" (e.g. { rank: 8 }) to add them, or reference "initial" (the model as it is now, its log-probs computed once)',
    );
  }
  if (saved && saved.reference !== reference) {
    throw new OptionsError(`trainDpo: option "reference": the checkpoint was trained with reference "${saved.reference}", not "${reference}"`);
  }

  // Reference sequence log-probs: [chosen, rejected] per pair, flattened.
  let trainRef: number[] | undefined;
  let valRef: number[];
  if (reference === "initial" && saved) {
    trainRef = savedRefs(saved.train, train.length, "training");
    valRef = savedRefs(saved.validation, validation.length, "validation");
  } else if (reference === "initial") {
    trainRef = await scorePairs(model, train, o.scoreBatchSize);
    valRef = await scorePairs(model, validation, o.scoreBatchSize);
  } else {
    // The base never changes under LoRA: the validation reference is scored once.
    await setAdapters(model, false);
    try {
      valRef = await scorePairs(model, validation, o.scoreBatchSize);
    } finally {
      await setAdapters(model, true);
    }
  }
  const loopExtra = { reference, ...(reference === "initial" ? { train: trainRef!, validation: valRef } : {}) };

  const monitor = trainingMonitor({
    title: "DPO",
    metrics: ["loss", "rewardAccuracy", "margin", "chosenReward", "rejectedReward", "valLoss", "valRewardAccuracy", "valMargin"],
    totalSteps: totalSteps - firstStep,
    display: o.display,
    barInfo: ["loss", "rewardAccuracy", "margin"],
  });
  for (const h of history) monitor.record(h.step, h);
  for (const e of evaluations) monitor.record(e.step, e);

  const savedNames: string[] = [];
  try {
    if (firstStep === 0 && validation.length > 0) {
      const e = await evaluateDpo(model, 0, validation, valRef, o);
      evaluations.push(e);
      monitor.record(0, e);
    }
    for (let step = firstStep; step < totalSteps; step++) {
      const stepStart = Date.now();
      const micro = Array.from({ length: o.gradientAccumulation }, (_, m) => order.take((step * o.gradientAccumulation + m) * o.batchSize, o.batchSize));
      const stepPairs = micro.reduce((n, b) => n + b.length, 0);
      const parts: { metrics: Partial<DpoMetrics> | null; pairs: number }[] = [];
      for (const [k, batch] of micro.entries()) {
        // Between micro-batches too: a step can take seconds.
        await stopIfAborted(model, o.signal, k > 0);
        const pairs = batch.map((i) => train[i]!);
        if (reference === "adapters") {
          const r = await forwardBackward(model, pairs.flatMap(sequences), { kind: "dpo", beta: o.beta }, { lossScale: pairs.length / stepPairs });
          parts.push({ metrics: r.loss === null ? null : bridgeMetrics(r.loss, r.metrics), pairs: pairs.length });
        } else {
          parts.push({ metrics: await initialReferenceStep(model, pairs, batch, trainRef!, stepPairs, o.beta, o.scoreBatchSize), pairs: pairs.length });
        }
      }
      const opt = await optimStep(model, { lr: lr(step), weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm });
      const m = combine(parts);
      const metrics: DpoStepMetrics = {
        step: step + 1,
        epoch: order.epochAt((step + 1) * perStep),
        loss: m.loss,
        rewardAccuracy: m.rewardAccuracy,
        margin: m.margin,
        chosenReward: m.chosenReward,
        rejectedReward: m.rejectedReward,
        lr: lr(step),
        gradNorm: opt.gradNorm,
        pairsPerS: stepPairs / Math.max(1e-3, (Date.now() - stepStart) / 1000),
        skipped: opt.skipped,
      };
      history.push(metrics);
      monitor.record(step + 1, metrics, true);

      const last = step + 1 === totalSteps;
      if (validation.length > 0 && ((step + 1) % evalEvery === 0 || last)) {
        const e = await evaluateDpo(model, step + 1, validation, valRef, o);
        evaluations.push(e);
        monitor.record(step + 1, e);
      }
      if (checkpoints && ((step + 1) % o.checkpoint!.every === 0 || last)) {
        const latest = evaluations.at(-1);
        const loop = { history, evaluations, dpo: loopExtra } as unknown as JsonObject;
        savedNames.push(await checkpoints.save(model, { step: step + 1, loop }, latest?.step === step + 1 ? { ...latest } : {}));
      }
    }
  } finally {
    monitor.close();
  }
  const rank = (e: DpoEvaluation) => e[o.metric];
  const best = evaluations
    .filter((e) => e.step > 0)
    .reduce<DpoEvaluation | undefined>((b, e) => (b === undefined || (MODE[o.metric] === "min" ? rank(e) < rank(b) : rank(e) > rank(b)) ? e : b), undefined);
  return {
    model,
    steps: history.length ? history.at(-1)!.step : 0,
    reference,
    history,
    evaluations,
    best,
    checkpoints: savedNames,
    pairs: { train: train.length, validation: validation.length },
    dropped: { train: trainSet.dropped, validation: valSet.dropped },
    truncation: trainSet.truncation,
    wallS: (Date.now() - started) / 1000,
  };
}

function checkRows(rows: readonly unknown[], where: string): void {
  rows.forEach((row, i) => {
    const r = PreferenceRow.safeParse(row);
    if (!r.success) {
      const problems = r.error.issues.map((issue) => `${issue.path.length ? `"${issue.path.join(".")}" ` : ""}${issue.message}`).join("; ");
      throw new OptionsError(`trainDpo: ${where} row ${i} is not a preference row {prompt, chosen, rejected}: ${problems}`);
    }
  });
}

function tokenizePairs(rows: readonly DpoDataRow[], tokenizer: Tokenizer, template: TemplateName | ChatTemplate, cutoffLength: number) {
  const options = { tokenizer, template, cutoffLength };
  const chosen = tokenizeDataset(rows.map((r) => ({ prompt: r.prompt, completion: r.chosen })), options);
  const rejected = tokenizeDataset(rows.map((r) => ({ prompt: r.prompt, completion: r.rejected })), options);
  const byRow = (examples: typeof chosen.examples) => new Map(examples.map((e) => [e.row, { tokens: e.tokens, mask: e.weights }]));
  const c = byRow(chosen.examples);
  const r = byRow(rejected.examples);
  const pairs: Pair[] = [];
  const dropped: DroppedPair[] = [];
  rows.forEach((_, row) => {
    const pc = c.get(row);
    const pr = r.get(row);
    if (!pc || !pr) dropped.push({ row, reason: "no completion tokens" });
    else if (pc.tokens.length === pr.tokens.length && pc.tokens.every((t, i) => t === pr.tokens[i])) dropped.push({ row, reason: "identical completions" });
    else pairs.push({ row, chosen: pc, rejected: pr });
  });
  return { pairs, dropped, truncation: { chosen: chosen.report, rejected: rejected.report } };
}

function describeDropped(dropped: readonly DroppedPair[]): string {
  const count = (reason: DroppedPair["reason"]) => dropped.filter((d) => d.reason === reason).length;
  return `${count("no completion tokens")} pair(s) had no completion token left, ${count("identical completions")} had identical completions`;
}

/** The two sequences of a pair as the bridge's dpo loss wants them: chosen, then rejected. */
const sequences = (p: Pair): TrainingExample[] => [
  { tokens: p.chosen.tokens, mask: p.chosen.mask },
  { tokens: p.rejected.tokens, mask: p.rejected.mask },
];

/** Whether the model has LoRA adapters (and, if so, turns them on). */
async function hasAdapters(model: Model): Promise<boolean> {
  try {
    await setAdapters(model, true);
    return true;
  } catch (err) {
    if (err instanceof BridgeError && err.kind === "bad_input" && /no LoRA adapters/.test(err.message)) return false;
    throw err;
  }
}

/** Sequence log-probs of each pair under the model as it is: [chosen, rejected] per pair. */
async function scorePairs(model: Model, pairs: readonly Pair[], batchSize: number): Promise<number[]> {
  const seqs = pairs.flatMap(sequences);
  const out: number[] = [];
  for (let start = 0; start < seqs.length; start += batchSize) {
    const batch = seqs.slice(start, start + batchSize);
    const scored = await logprobs(model, batch.map((s) => s.tokens));
    batch.forEach((s, i) => out.push(sequenceLogprob(scored[i]!, s.mask!)));
  }
  return out;
}

function pairLogprobs(policy: readonly number[], ref: readonly number[], i: number, refIndex = i): PairLogprobs {
  return { policyChosen: policy[2 * i]!, policyRejected: policy[2 * i + 1]!, refChosen: ref[2 * refIndex]!, refRejected: ref[2 * refIndex + 1]! };
}

function savedRefs(values: number[] | undefined, pairs: number, which: string): number[] {
  if (!Array.isArray(values) || values.length !== 2 * pairs) {
    throw new Error(`trainDpo: the checkpoint's reference log-probs cover ${Array.isArray(values) ? values.length / 2 : 0} ${which} pairs, the data has ${pairs}: resume with the data it was trained on`);
  }
  return values;
}

/** DPO against given reference log-probs: score the pairs, then backward a policy-gradient
 * loss whose gradient at ratio 1 is DPO's: advantage +β·σ(−β·Δ) on chosen, − on rejected,
 * summed over completion tokens and divided by the step's pairs (micro-batches add up). */
async function initialReferenceStep(
  model: Model,
  pairs: readonly Pair[],
  indices: readonly number[],
  trainRef: readonly number[],
  stepPairs: number,
  beta: number,
  batchSize: number,
): Promise<DpoMetrics | null> {
  const seqs = pairs.flatMap(sequences);
  const scored: number[][] = [];
  for (let start = 0; start < seqs.length; start += batchSize) scored.push(...(await logprobs(model, seqs.slice(start, start + batchSize).map((s) => s.tokens))));
  const policy = seqs.map((s, k) => sequenceLogprob(scored[k]!, s.mask!));
  const logs = pairs.map((_, i) => pairLogprobs(policy, trainRef, i, indices[i]!));
  const weights = logs.map((p) => dpoGradientWeight(p, beta));
  const examples: TrainingExample[] = seqs.map((s, k) => ({
    ...s,
    oldLogprobs: [0, ...scored[k]!],
    advantage: k % 2 === 0 ? weights[k >> 1]! : -weights[k >> 1]!,
  }));
  const r = await forwardBackward(model, examples, {
    kind: "policy_gradient",
    aggregation: "seq_mean_token_sum_norm",
    constant: stepPairs,
    // No clipping: the ratio is 1 up to dropout noise.
    epsLow: 1,
    epsHigh: 1e9,
  });
  const metrics = dpoMetrics(logs, beta);
  return r.loss === null || !Number.isFinite(metrics.loss) ? null : metrics;
}

function bridgeMetrics(loss: number, m: Record<string, number | null>): Partial<DpoMetrics> {
  const pick = (k: string) => m[k] ?? undefined;
  return { loss, rewardAccuracy: pick("reward_accuracy"), margin: pick("reward_margin"), chosenReward: pick("chosen_reward"), rejectedReward: pick("rejected_reward") };
}

/** Pair-weighted means of the micro-batches' metrics; null when any was not finite. */
function combine(parts: readonly { metrics: Partial<DpoMetrics> | null; pairs: number }[]) {
  const keys = ["loss", "rewardAccuracy", "margin", "chosenReward", "rejectedReward"] as const;
  const total = parts.reduce((n, p) => n + p.pairs, 0);
  return Object.fromEntries(
    keys.map((k) => {
      if (parts.some((p) => p.metrics?.[k] === undefined)) return [k, null];
      return [k, parts.reduce((s, p) => s + p.metrics![k]! * p.pairs, 0) / total];
    }),
  ) as Record<(typeof keys)[number], number | null>;
}

async function evaluateDpo(model: Model, step: number, pairs: readonly Pair[], ref: readonly number[], o: Options): Promise<DpoEvaluation> {
  const policy = await scorePairs(model, pairs, o.scoreBatchSize);
  const m = dpoMetrics(pairs.map((_, i) => pairLogprobs(policy, ref, i)), o.beta);
  return { step, valLoss: m.loss, valRewardAccuracy: m.rewardAccuracy, valMargin: m.margin, valChosenReward: m.chosenReward, valRejectedReward: m.rejectedReward };
}
