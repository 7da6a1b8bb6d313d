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
 *               (with `logprobs`) for every pair, kept, and given to the bridge's `dpo` loss.
 *               Full fine-tuning needs it (there is nothing to switch off); with LoRA it makes
 *               an SFT-trained adapter the reference. */
import { z } from "zod";
import type { Model } from "../cells/model.ts";
import { logprobs } from "../cells/sample.ts";
import { forward, forwardBackward, optimStep, setAdapters, type TrainingExample } from "../cells/train.ts";
import { type ChatTemplate, ChatTemplateSchema, type TemplateName } from "../chat/templates.ts";
import { type TruncationReport, tokenizeDataset } from "../chat/tokenize.ts";
import { PreferenceRow } from "../data/shapes.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { stopIfAborted } from "../training/abort.ts";
import {
  applyLoraChoice,
  batchLoopShape,
  batchSchedule,
  batchStepShape,
  checkLoopOptions,
  LoraChoice,
  runShape,
} from "../training/cell-options.ts";
import { dataOrder, stepBatches } from "../training/data-order.ts";
import { type Trainer, TrainingLoop } from "../training/loop.ts";
import type { StopReason } from "../training/stop-rules.ts";
import { formatIssues, issuesFrom, OptionsError, parseOptions } from "../util/options.ts";
import { type DpoMetrics, sequenceLogprob } from "./metrics.ts";

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
    /** checkpoint, resume, seed, display, signal, stopWhen. */
    ...runShape,
  })
  .strict();
export type TrainDpoOptions = Omit<z.input<typeof TrainDpoOptions>, "template"> & {
  template?: TemplateName | ChatTemplate;
};

/** `loss` is the mean −log σ(β·Δ) over the step's pairs; the rewards are means too. */
export const DpoStepMetrics = z.object({
  ...batchStepShape,
  rewardAccuracy: z.number().nullable(),
  margin: z.number().nullable(),
  chosenReward: z.number().nullable(),
  rejectedReward: z.number().nullable(),
  pairsPerS: z.number(),
});
export type DpoStepMetrics = z.output<typeof DpoStepMetrics>;

/** null: a validation micro-batch's loss was not finite. */
export const DpoEvaluation = z.object({
  step: z.number().int(),
  valLoss: z.number().nullable(),
  valRewardAccuracy: z.number().nullable(),
  valMargin: z.number().nullable(),
  valChosenReward: z.number().nullable(),
  valRejectedReward: z.number().nullable(),
});
export type DpoEvaluation = z.output<typeof DpoEvaluation>;

/** What a checkpoint keeps of the reference: which it is, and the "initial" one's log-probs
 * ([chosen, rejected] per pair), which a resumed run cannot compute again. */
const DpoState = z.object({
  reference: z.enum(DPO_REFERENCES),
  train: z.array(z.number()).optional(),
  validation: z.array(z.number()).optional(),
});

export interface DroppedPair {
  row: number;
  reason: "no completion tokens" | "identical completions";
}

/** What a DPO run reports beside the trainer's history and evaluations. */
interface DpoRun {
  reference: DpoReference;
  pairs: { train: number; validation: number };
  dropped: { train: DroppedPair[]; validation: DroppedPair[] };
  truncation: { chosen: TruncationReport; rejected: TruncationReport };
}

export type DpoTrainer = Trainer<DpoStepMetrics, DpoEvaluation> & DpoRun;

export interface DpoResult extends DpoRun {
  model: Model;
  steps: number;
  history: DpoStepMetrics[];
  /** The first (step 0) is the model before training: margins 0 when π = π_ref. */
  evaluations: DpoEvaluation[];
  best: DpoEvaluation | undefined;
  /** Why the run stopped before its last step (a stop rule), or null. */
  stopped: StopReason | null;
  checkpoints: string[];
  wallS: number;
}

/** One tokenized pair: completion tokens masked 1 (the ones the sequence log-prob sums). */
interface Pair {
  row: number;
  chosen: { tokens: number[]; mask: number[] };
  rejected: { tokens: number[]; mask: number[] };
}

type Options = z.output<typeof TrainDpoOptions>;
type DataSplits = { train: readonly DpoDataRow[]; validation?: readonly DpoDataRow[] };

export async function trainDpo(
  model: Model,
  tokenizer: Tokenizer,
  data: DataSplits,
  options: TrainDpoOptions = {},
): Promise<DpoResult> {
  const started = Date.now();
  const trainer = await dpoTrainer(model, tokenizer, data, options);
  await trainer.run();
  const { history, evaluations, best, stopped, checkpoints, reference, pairs, dropped, truncation } = trainer;
  return {
    model: trainer.model,
    steps: history.at(-1)?.step ?? 0,
    reference,
    history,
    evaluations,
    best,
    stopped,
    checkpoints,
    pairs,
    dropped,
    truncation,
    wallS: (Date.now() - started) / 1000,
  };
}

/** trainDpo's trainer, to run step by step (`step()`, `run(n)`); trainDpo runs it to the end. */
export async function dpoTrainer(
  model: Model,
  tokenizer: Tokenizer,
  data: DataSplits,
  options: TrainDpoOptions = {},
): Promise<DpoTrainer> {
  const o = parseOptions(TrainDpoOptions, options, "trainDpo");
  checkLoopOptions(o, "trainDpo");
  if (o.lora === false && o.reference === "adapters") {
    throw new OptionsError(
      'trainDpo: option "reference": "adapters" (the model with its LoRA adapters off) needs adapters, ' +
        'but option "lora" is false (full fine-tuning); use reference "initial" or LoRA',
    );
  }
  if (!data?.train?.length) throw new OptionsError("trainDpo: data.train is empty");
  checkRows(data.train, "data.train");
  if (data.validation) checkRows(data.validation, "data.validation");
  const template = o.template as TemplateName | ChatTemplate;
  const cutoffLength = o.cutoffLength ?? Math.min(512, model.info.max_position_embeddings);

  const trainSet = tokenizePairs(data.train, tokenizer, template, cutoffLength);
  if (trainSet.pairs.length === 0) {
    throw new Error(
      `trainDpo: no training pair is left to learn from: ${describeDropped(trainSet.dropped)} (cutoffLength ${cutoffLength})`,
    );
  }
  const valSet = tokenizePairs(data.validation ?? [], tokenizer, template, cutoffLength);
  const train = trainSet.pairs;
  const validation = valSet.pairs;

  model = await applyLoraChoice(model, o.lora);

  const { perStep, totalSteps, lr } = batchSchedule(o, train.length, 0.1);
  const order = dataOrder(train.length, o.seed);
  const loop = new TrainingLoop({
    kind: "dpo",
    cell: "trainDpo",
    schemas: { step: DpoStepMetrics, evaluation: DpoEvaluation, state: DpoState },
    rank: { metric: o.metric, mode: MODE[o.metric] },
    options: o,
  });
  const { resumed, model: resumedModel } = await loop.resume(model);
  model = resumedModel;
  const saved = resumed?.state;

  // After resuming: a saved state re-creates its adapters on a model that has none.
  const adapters = model.info.lora !== null;
  if (adapters) await setAdapters(model, true);
  const reference: DpoReference = o.reference ?? saved?.reference ?? (adapters ? "adapters" : "initial");
  if (reference === "adapters" && !adapters) {
    throw new OptionsError(
      'trainDpo: option "reference": "adapters" needs LoRA adapters (the reference is the model with them off) and the model has none; ' +
        'pass option "lora" (e.g. { rank: 8 }) to add them, or reference "initial" (the model as it is now, its log-probs computed once)',
    );
  }
  if (saved && saved.reference !== reference) {
    throw new OptionsError(
      `trainDpo: option "reference": the checkpoint was trained with reference "${saved.reference}", not "${reference}"`,
    );
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
  const state = { reference, ...(trainRef && { train: trainRef, validation: valRef }) };

  async function step(index: number): Promise<DpoStepMetrics> {
    const stepStart = Date.now();
    const micro = stepBatches(order, index, o);
    const stepPairs = micro.reduce((n, b) => n + b.length, 0);
    const parts: { metrics: Partial<DpoMetrics> | null; pairs: number }[] = [];
    for (const [k, batch] of micro.entries()) {
      // The loop checks the signal before each step; a step can take seconds, so between its micro-batches too.
      if (k > 0) await stopIfAborted(model, loop.signal, true);
      const refLogprobs = trainRef && batch.flatMap((i) => [trainRef[2 * i]!, trainRef[2 * i + 1]!]);
      const loss = { kind: "dpo" as const, beta: o.beta, ...(refLogprobs && { refLogprobs }) };
      const r = await forwardBackward(
        model,
        batch.flatMap((i) => sequences(train[i]!)),
        loss,
        { lossScale: batch.length / stepPairs },
      );
      parts.push({ metrics: r.loss === null ? null : bridgeMetrics(r.metrics), pairs: batch.length });
    }
    const opt = await optimStep(model, { lr: lr(index), weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm });
    return {
      step: index + 1,
      epoch: order.epochAt((index + 1) * perStep),
      ...combine(parts),
      lr: lr(index),
      gradNorm: opt.gradNorm,
      pairsPerS: stepPairs / Math.max(1e-3, (Date.now() - stepStart) / 1000),
      skipped: opt.skipped,
    };
  }

  const run: DpoRun = {
    reference,
    pairs: { train: train.length, validation: validation.length },
    dropped: { train: trainSet.dropped, validation: valSet.dropped },
    truncation: trainSet.truncation,
  };
  return loop.start(
    {
      model,
      totalSteps,
      step,
      nonFinite: (m) => m.skipped,
      ...(validation.length > 0 && {
        evaluation: {
          every: o.evalEvery ?? Math.max(1, Math.round(totalSteps / 10)),
          atStart: true,
          run: (at: number) => evaluateDpo(model, at, validation, valRef, o),
        },
      }),
      state: () => state,
      chart: {
        title: "DPO",
        metrics: [
          "loss",
          "rewardAccuracy",
          "margin",
          "chosenReward",
          "rejectedReward",
          "valLoss",
          "valRewardAccuracy",
          "valMargin",
        ],
        barInfo: ["loss", "rewardAccuracy", "margin"],
      },
    },
    resumed,
    run,
  );
}

function checkRows(rows: readonly unknown[], where: string): void {
  rows.forEach((row, i) => {
    const r = PreferenceRow.safeParse(row);
    if (!r.success) {
      const issues = issuesFrom(r.error, row);
      throw new OptionsError(
        `trainDpo: ${where} row ${i} is not a preference row {prompt, chosen, rejected}: ${formatIssues(issues, "field")}`,
        { where: "trainDpo", issues },
      );
    }
  });
}

function tokenizePairs(
  rows: readonly DpoDataRow[],
  tokenizer: Tokenizer,
  template: TemplateName | ChatTemplate,
  cutoffLength: number,
) {
  const options = { tokenizer, template, cutoffLength };
  const chosen = tokenizeDataset(
    rows.map((r) => ({ prompt: r.prompt, completion: r.chosen })),
    options,
  );
  const rejected = tokenizeDataset(
    rows.map((r) => ({ prompt: r.prompt, completion: r.rejected })),
    options,
  );
  const byRow = (examples: typeof chosen.examples) =>
    new Map(examples.map((e) => [e.row, { tokens: e.tokens, mask: e.weights }]));
  const c = byRow(chosen.examples);
  const r = byRow(rejected.examples);
  const pairs: Pair[] = [];
  const dropped: DroppedPair[] = [];
  rows.forEach((_, row) => {
    const pc = c.get(row);
    const pr = r.get(row);
    if (!pc || !pr) dropped.push({ row, reason: "no completion tokens" });
    else if (pc.tokens.length === pr.tokens.length && pc.tokens.every((t, i) => t === pr.tokens[i]))
      dropped.push({ row, reason: "identical completions" });
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

/** Sequence log-probs of each pair under the model as it is: [chosen, rejected] per pair. */
async function scorePairs(model: Model, pairs: readonly Pair[], batchSize: number): Promise<number[]> {
  const seqs = pairs.flatMap(sequences);
  const out: number[] = [];
  for (let start = 0; start < seqs.length; start += batchSize) {
    const batch = seqs.slice(start, start + batchSize);
    const scored = await logprobs(
      model,
      batch.map((s) => s.tokens),
    );
    batch.forEach((s, i) => out.push(sequenceLogprob(scored[i]!, s.mask!)));
  }
  return out;
}

function savedRefs(values: number[] | undefined, pairs: number, which: string): number[] {
  if (values?.length !== 2 * pairs) {
    throw new Error(
      `trainDpo: the checkpoint's reference log-probs cover ${(values?.length ?? 0) / 2} ${which} pairs, ` +
        `the data has ${pairs}: resume with the data it was trained on`,
    );
  }
  return values;
}

/** The dpo loss's metrics (its "loss" metric in float64, where the step's loss is fp32). */
function bridgeMetrics(m: Record<string, number | null>): Partial<DpoMetrics> {
  const pick = (k: string) => m[k] ?? undefined;
  return {
    loss: pick("loss"),
    rewardAccuracy: pick("reward_accuracy"),
    margin: pick("reward_margin"),
    chosenReward: pick("chosen_reward"),
    rejectedReward: pick("rejected_reward"),
  };
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

/** The validation pairs' loss and rewards: the bridge's dpo loss, forward only, against the
 * reference log-probs scored once, in micro-batches of scoreBatchSize sequences. */
async function evaluateDpo(
  model: Model,
  step: number,
  pairs: readonly Pair[],
  ref: readonly number[],
  o: Options,
): Promise<DpoEvaluation> {
  const parts: { metrics: Partial<DpoMetrics> | null; pairs: number }[] = [];
  const perBatch = Math.max(1, Math.floor(o.scoreBatchSize / 2));
  for (let start = 0; start < pairs.length; start += perBatch) {
    const batch = pairs.slice(start, start + perBatch);
    const refLogprobs = ref.slice(2 * start, 2 * (start + batch.length));
    const r = await forward(model, batch.flatMap(sequences), { kind: "dpo", beta: o.beta, refLogprobs });
    parts.push({ metrics: r.loss === null ? null : bridgeMetrics(r.metrics), pairs: batch.length });
  }
  const m = combine(parts);
  return {
    step,
    valLoss: m.loss,
    valRewardAccuracy: m.rewardAccuracy,
    valMargin: m.margin,
    valChosenReward: m.chosenReward,
    valRejectedReward: m.rejectedReward,
  };
}
