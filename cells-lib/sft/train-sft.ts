/** `trainSft`: the SFT cold start as one cell — epochs or steps, batches with gradient
 * accumulation, a warmup + decay schedule, LoRA or full fine-tuning, evaluation on the
 * validation split (loss; accuracy and format adherence for rows with a reference answer),
 * early stopping, checkpoints (best K) and exact resume, a live chart and a progress bar. */
import { z } from "zod";
import type { Model } from "../cells/model.ts";
import { forwardBackward, optimStep, type TrainingExample } from "../cells/train.ts";
import { type ChatTemplate, ChatTemplateSchema, type TemplateName } from "../chat/templates.ts";
import { type SftRow, type TruncationReport, tokenizeDataset } from "../chat/tokenize.ts";
import { type EvalRow, evaluate } from "../eval/evaluate.ts";
import { REASONING_STYLES, type ReasoningStyle } from "../reasoning/index.ts";
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
import { validationLoss } from "../training/validation-loss.ts";
import { OptionsError, parseOptions } from "../util/options.ts";
import { packExamples } from "./packing.ts";

/** A training row; `reference` (the verifiable answer) enables accuracy in evaluations. */
export type SftDataRow = SftRow & { reference?: string };

const EVAL_METRICS = ["valLoss", "accuracy", "formatAccuracy"] as const;
type EvalMetric = (typeof EVAL_METRICS)[number];
const MODE: Record<EvalMetric, "min" | "max"> = { valLoss: "min", accuracy: "max", formatAccuracy: "max" };

const TrainSftOptions = z
  .object({
    /** steps or epochs, batchSize, gradientAccumulation, lr (default 1e-4), schedule,
     * warmupSteps (default: 5% of the steps), weightDecay, maxGradNorm. */
    ...batchLoopShape({ lr: 1e-4 }),
    /** LoRA options to add adapters, false for full fine-tuning; default: train the model as it is. */
    lora: LoraChoice.optional(),
    template: z.union([z.string(), ChatTemplateSchema]).default("plain"),
    cutoffLength: z.number().int().min(2).optional(),
    /** Concatenate short examples up to cutoffLength (fewer, fuller sequences); each still
     * attends only to itself, so its loss is the one it has alone. */
    packing: z.boolean().default(false),
    /** Evaluate every N steps (and at the end); default: 10 evaluations per run. */
    evalEvery: z.number().int().min(1).optional(),
    /** Validation rows generated for accuracy and format (loss uses every validation row). */
    evalRows: z.number().int().min(1).default(100),
    evalMaxNewTokens: z.number().int().min(1).default(128),
    /** The reasoning format completions should follow. */
    style: z.enum(REASONING_STYLES).default("think"),
    earlyStopping: z
      .object({
        patience: z.number().int().min(1),
        metric: z.enum(EVAL_METRICS).default("valLoss"),
        minDelta: z.number().min(0).default(0),
      })
      .strict()
      .optional(),
    /** Which metric ranks checkpoints ("best") and early stopping's default. */
    metric: z.enum(EVAL_METRICS).default("valLoss"),
    /** checkpoint, resume, seed, display, signal, stopWhen. */
    ...runShape,
  })
  .strict();
export type TrainSftOptions = Omit<z.input<typeof TrainSftOptions>, "template"> & {
  template?: TemplateName | ChatTemplate;
};

export const SftStepMetrics = z.object({ ...batchStepShape, tokensPerS: z.number() });
export type SftStepMetrics = z.output<typeof SftStepMetrics>;

export const SftEvaluation = z.object({
  step: z.number().int(),
  valLoss: z.number(),
  /** null when no validation row has a reference answer. */
  accuracy: z.number().nullable(),
  formatAccuracy: z.number().nullable(),
});
export type SftEvaluation = z.output<typeof SftEvaluation>;

export type SftTrainer = Trainer<SftStepMetrics, SftEvaluation> & { truncation: TruncationReport };

export interface SftResult {
  model: Model;
  steps: number;
  history: SftStepMetrics[];
  evaluations: SftEvaluation[];
  best: SftEvaluation | undefined;
  /** Why the run stopped before its last step (early stopping or another stop rule), or null. */
  stopped: StopReason | null;
  /** stopped !== null. */
  stoppedEarly: boolean;
  checkpoints: string[];
  truncation: TruncationReport;
  wallS: number;
}

type DataSplits = { train: readonly SftDataRow[]; validation?: readonly SftDataRow[] };

export async function trainSft(
  model: Model,
  tokenizer: Tokenizer,
  data: DataSplits,
  options: TrainSftOptions = {},
): Promise<SftResult> {
  const started = Date.now();
  const trainer = await sftTrainer(model, tokenizer, data, options);
  await trainer.run();
  const { history, evaluations, best, stopped, checkpoints, truncation } = trainer;
  return {
    model: trainer.model,
    steps: history.at(-1)?.step ?? 0,
    history,
    evaluations,
    best,
    stopped,
    stoppedEarly: stopped !== null,
    checkpoints,
    truncation,
    wallS: (Date.now() - started) / 1000,
  };
}

/** trainSft's trainer, to run step by step (`step()`, `run(n)`); trainSft runs it to the end. */
export async function sftTrainer(
  model: Model,
  tokenizer: Tokenizer,
  data: DataSplits,
  options: TrainSftOptions = {},
): Promise<SftTrainer> {
  const o = parseOptions(TrainSftOptions, options, "trainSft");
  checkLoopOptions(o, "trainSft");
  if (!data.train?.length) throw new OptionsError("trainSft: data.train is empty");
  const template = o.template as TemplateName | ChatTemplate;
  const cutoffLength = o.cutoffLength ?? Math.min(512, model.info.max_position_embeddings);

  model = await applyLoraChoice(model, o.lora);

  const { examples: tokenized, report } = tokenizeDataset(data.train, { tokenizer, template, cutoffLength });
  if (tokenized.length === 0)
    throw new Error(`trainSft: no training row has a token to learn from. ${report.dropped.length} rows were dropped`);
  const train: TrainingExample[] = o.packing
    ? packExamples(tokenized, { maxLength: cutoffLength }).sequences
    : tokenized;
  const validation = data.validation ?? [];
  const valExamples = validation.length
    ? tokenizeDataset(validation, { tokenizer, template, cutoffLength }).examples
    : [];
  const evalRows: EvalRow[] = validation
    .filter((r): r is SftDataRow & { reference: string } => typeof r.reference === "string")
    .slice(0, o.evalRows)
    .map((r) =>
      "messages" in r ? { messages: r.messages, reference: r.reference } : { prompt: r.prompt, reference: r.reference },
    );

  const { perStep, totalSteps, lr } = batchSchedule(o, train.length, 0.05);
  const order = dataOrder(train.length, o.seed);
  const loop = new TrainingLoop({
    kind: "sft",
    cell: "trainSft",
    schemas: { step: SftStepMetrics, evaluation: SftEvaluation, state: z.null() },
    rank: { metric: o.metric, mode: MODE[o.metric] },
    earlyStopping: o.earlyStopping && { ...o.earlyStopping, mode: MODE[o.earlyStopping.metric] },
    options: o,
  });
  const { resumed, model: resumedModel } = await loop.resume(model);
  model = resumedModel;

  async function step(index: number): Promise<SftStepMetrics> {
    const stepStart = Date.now();
    const micro = stepBatches(order, index, o).map((batch) => batch.map((i) => train[i]!));
    // Normalize by the whole step's trained tokens so micro-batches add up to one batch's mean.
    const numTokens = micro.flat().reduce((s, e) => s + e.weights!.reduce((a, w) => a + w, 0), 0);
    let loss: number | null = 0;
    let tokens = 0;
    for (const [m, batch] of micro.entries()) {
      // The loop checks the signal before each step; a step can take seconds, so between its
      // micro-batches too, dropping the gradients of those done (the next step must not inherit them).
      if (m > 0) await stopIfAborted(model, loop.signal, true);
      const r = await forwardBackward(model, batch, { kind: "cross_entropy", numTokens: Math.max(numTokens, 1) });
      loss = loss === null || r.loss === null ? null : loss + r.loss;
      tokens += r.tokens;
    }
    const opt = await optimStep(model, { lr: lr(index), weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm });
    return {
      step: index + 1,
      epoch: order.epochAt((index + 1) * perStep),
      loss,
      lr: lr(index),
      gradNorm: opt.gradNorm,
      tokensPerS: tokens / Math.max(1e-3, (Date.now() - stepStart) / 1000),
      skipped: opt.skipped,
    };
  }

  const evaluationOptions = { template, maxNewTokens: o.evalMaxNewTokens, style: o.style };
  return loop.start(
    {
      model,
      totalSteps,
      step,
      nonFinite: (m) => m.skipped,
      ...(valExamples.length > 0 && {
        evaluation: {
          every: o.evalEvery ?? Math.max(1, Math.round(totalSteps / 10)),
          atStart: false,
          // The loop's signal is read now: during a run it also carries the kernel's interrupt.
          run: (at: number) =>
            evaluateSft(model, tokenizer, at, valExamples, evalRows, { ...evaluationOptions, signal: loop.signal }),
        },
      }),
      state: () => null,
      chart: { title: "SFT", metrics: ["loss", "valLoss", "accuracy", "formatAccuracy", "lr", "gradNorm"] },
    },
    resumed,
    { truncation: report },
  );
}

async function evaluateSft(
  model: Model,
  tokenizer: Tokenizer,
  step: number,
  valExamples: readonly TrainingExample[],
  evalRows: readonly EvalRow[],
  options: { template: TemplateName | ChatTemplate; maxNewTokens: number; style: ReasoningStyle; signal: AbortSignal },
): Promise<SftEvaluation> {
  const valLoss = await validationLoss(model, valExamples, { signal: options.signal });
  if (evalRows.length === 0) return { step, valLoss, accuracy: null, formatAccuracy: null };
  const r = await evaluate(model, tokenizer, evalRows, options);
  return { step, valLoss, accuracy: r.accuracy, formatAccuracy: r.formatAccuracy };
}
