/** `trainSft`: the SFT cold start as one cell — epochs or steps, batches with gradient
 * accumulation, a warmup + decay schedule, LoRA or full fine-tuning, evaluation on the
 * validation split (loss; accuracy and format adherence for rows with a reference answer),
 * early stopping, checkpoints (best K) and exact resume, a live chart and a progress bar. */
import { z } from "zod";
import type { Model } from "../cells/model.ts";
import { forwardBackward, optimStep, type TrainingExample } from "../cells/train.ts";
import { stopIfAborted } from "../training/abort.ts";
import type { JsonObject } from "../checkpoints/store.ts";
import { evaluate, type EvalRow } from "../eval/evaluate.ts";
import { REASONING_STYLES } from "../reasoning/index.ts";
import { applyLoraChoice, batchLoopShape, batchRunShape, batchSchedule, checkLoopOptions, LoraChoice } from "../training/cell-options.ts";
import { TrainingCheckpoints } from "../training/checkpointing.ts";
import { dataOrder } from "../training/data-order.ts";
import { earlyStopping } from "../training/early-stopping.ts";
import { trainingMonitor } from "../training/monitor.ts";
import { validationLoss } from "../training/validation-loss.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { OptionsError, parseOptions } from "../util/options.ts";
import { packExamples } from "./packing.ts";
import { ChatTemplateSchema, type ChatTemplate, type TemplateName } from "./templates.ts";
import { tokenizeDataset, type SftRow, type TruncationReport } from "./tokenize.ts";

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
    /** Concatenate short examples up to cutoffLength (fewer, fuller sequences). */
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
    /** checkpoint, resume, seed, display, signal (checked before each request to the bridge). */
    ...batchRunShape,
  })
  .strict();
export type TrainSftOptions = Omit<z.input<typeof TrainSftOptions>, "template"> & { template?: TemplateName | ChatTemplate };

export interface SftStepMetrics {
  step: number;
  epoch: number;
  loss: number | null;
  lr: number;
  gradNorm: number | null;
  tokensPerS: number;
  skipped: boolean;
}

export interface SftEvaluation {
  step: number;
  valLoss: number;
  /** null when no validation row has a reference answer. */
  accuracy: number | null;
  formatAccuracy: number | null;
}

export interface SftResult {
  model: Model;
  steps: number;
  history: SftStepMetrics[];
  evaluations: SftEvaluation[];
  best: SftEvaluation | undefined;
  stoppedEarly: boolean;
  checkpoints: string[];
  truncation: TruncationReport;
  wallS: number;
}

export async function trainSft(
  model: Model,
  tokenizer: Tokenizer,
  data: { train: readonly SftDataRow[]; validation?: readonly SftDataRow[] },
  options: TrainSftOptions = {},
): Promise<SftResult> {
  const o = parseOptions(TrainSftOptions, options, "trainSft");
  checkLoopOptions(o, "trainSft");
  if (!data.train?.length) throw new OptionsError("trainSft: data.train is empty");
  const started = Date.now();
  const template = o.template as TemplateName | ChatTemplate;
  const cutoffLength = o.cutoffLength ?? Math.min(512, model.info.max_position_embeddings);

  model = await applyLoraChoice(model, o.lora);

  const { examples: tokenized, report } = tokenizeDataset(data.train, { tokenizer, template, cutoffLength });
  if (tokenized.length === 0) throw new Error(`trainSft: no training row has a token to learn from. ${report.dropped.length} rows were dropped`);
  const train: TrainingExample[] = o.packing ? packExamples(tokenized, { maxLength: cutoffLength }).sequences : tokenized;
  const validation = data.validation ?? [];
  const valExamples = validation.length ? tokenizeDataset(validation, { tokenizer, template, cutoffLength }).examples : [];
  const evalRows: EvalRow[] = validation
    .filter((r): r is SftDataRow & { reference: string } => typeof r.reference === "string")
    .slice(0, o.evalRows)
    .map((r) => ("messages" in r ? { messages: r.messages, reference: r.reference } : { prompt: r.prompt, reference: r.reference }));

  const { perStep, totalSteps, lr } = batchSchedule(o, train.length, 0.05);
  const evalEvery = o.evalEvery ?? Math.max(1, Math.round(totalSteps / 10));
  const order = dataOrder(train.length, o.seed);
  const stopMetric = o.earlyStopping?.metric ?? o.metric;
  const stopper = o.earlyStopping ? earlyStopping({ patience: o.earlyStopping.patience, mode: MODE[stopMetric], minDelta: o.earlyStopping.minDelta }) : undefined;
  const checkpoints = o.checkpoint ? new TrainingCheckpoints(o.checkpoint, o.metric, MODE[o.metric]) : undefined;

  let history: SftStepMetrics[] = [];
  let evaluations: SftEvaluation[] = [];
  let firstStep = 0;
  if (o.resume && checkpoints) {
    const state = await checkpoints.resume(model, o.resume);
    firstStep = state.step;
    history = state.loop.history as unknown as SftStepMetrics[];
    evaluations = state.loop.evaluations as unknown as SftEvaluation[];
    // Early stopping continues from the evaluations already made.
    for (const e of evaluations) if (e[stopMetric] !== null) stopper?.update(e[stopMetric]!);
  }

  const monitor = trainingMonitor({
    title: "SFT",
    metrics: ["loss", "valLoss", "accuracy", "formatAccuracy", "lr", "gradNorm"],
    totalSteps: totalSteps - firstStep,
    display: o.display,
  });
  for (const h of history) monitor.record(h.step, h);
  for (const e of evaluations) monitor.record(e.step, e);

  const saved: string[] = [];
  let stoppedEarly = false;
  try {
    for (let step = firstStep; step < totalSteps; step++) {
      const stepStart = Date.now();
      const micro = Array.from({ length: o.gradientAccumulation }, (_, m) => order.take((step * o.gradientAccumulation + m) * o.batchSize, o.batchSize).map((i) => train[i]!));
      // Normalize by the whole step's trained tokens so micro-batches add up to one batch's mean.
      const numTokens = micro.flat().reduce((s, e) => s + e.weights!.reduce((a, w) => a + w, 0), 0);
      let loss: number | null = 0;
      let tokens = 0;
      for (const [m, batch] of micro.entries()) {
        // Between micro-batches too: a step can take seconds. The micro-batches already done
        // leave gradients in the bridge that the next step must not inherit.
        await stopIfAborted(model, o.signal, m > 0);
        const r = await forwardBackward(model, batch, { kind: "cross_entropy", numTokens: Math.max(numTokens, 1) });
        loss = loss === null || r.loss === null ? null : loss + r.loss;
        tokens += r.tokens;
      }
      const opt = await optimStep(model, { lr: lr(step), weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm });
      const metrics: SftStepMetrics = {
        step: step + 1,
        epoch: order.epochAt((step + 1) * perStep),
        loss,
        lr: lr(step),
        gradNorm: opt.gradNorm,
        tokensPerS: tokens / Math.max(1e-3, (Date.now() - stepStart) / 1000),
        skipped: opt.skipped,
      };
      history.push(metrics);
      monitor.record(step + 1, metrics, true);

      const last = step + 1 === totalSteps;
      if ((step + 1) % evalEvery === 0 || last) {
        const evaluation = await evaluateSft(model, tokenizer, step + 1, valExamples, evalRows, o);
        if (evaluation) {
          evaluations.push(evaluation);
          monitor.record(step + 1, evaluation);
          const value = evaluation[stopMetric];
          if (stopper && value !== null && stopper.update(value)) stoppedEarly = true;
        }
      }
      if (checkpoints && ((step + 1) % o.checkpoint!.every === 0 || last || stoppedEarly)) {
        const latest = evaluations.at(-1);
        const loop = { history, evaluations } as unknown as JsonObject;
        saved.push(await checkpoints.save(model, { step: step + 1, loop }, latest?.step === step + 1 ? { ...latest } : {}));
      }
      if (stoppedEarly) break;
    }
  } finally {
    monitor.close();
  }
  const rank = (e: SftEvaluation) => e[o.metric];
  const best = evaluations
    .filter((e) => rank(e) !== null)
    .reduce<SftEvaluation | undefined>((b, e) => (b === undefined || (MODE[o.metric] === "min" ? rank(e)! < rank(b)! : rank(e)! > rank(b)!) ? e : b), undefined);
  return { model, steps: history.length ? history.at(-1)!.step : 0, history, evaluations, best, stoppedEarly, checkpoints: saved, truncation: report, wallS: (Date.now() - started) / 1000 };
}

async function evaluateSft(
  model: Model,
  tokenizer: Tokenizer,
  step: number,
  valExamples: readonly TrainingExample[],
  evalRows: readonly EvalRow[],
  o: z.output<typeof TrainSftOptions>,
): Promise<SftEvaluation | undefined> {
  if (valExamples.length === 0) return undefined;
  const valLoss = await validationLoss(model, valExamples, { signal: o.signal });
  if (evalRows.length === 0) return { step, valLoss, accuracy: null, formatAccuracy: null };
  const r = await evaluate(model, tokenizer, evalRows, {
    template: o.template as TemplateName | ChatTemplate, maxNewTokens: o.evalMaxNewTokens, style: o.style, signal: o.signal,
  });
  return { step, valLoss, accuracy: r.accuracy, formatAccuracy: r.formatAccuracy };
}
