/** Options the training cells share (trainSft, trainDpo, the RL trainer): zod shape pieces that
 * each cell spreads into its own schema with its own defaults, and the few steps every
 * step-or-epoch cell takes with them (checks, LoRA on or off, the step count and the schedule). */
import { z } from "zod";
import { LoraTargets } from "../bridge/protocol.ts";
import type { Model } from "../cells/model.ts";
import { applyLora, removeLora } from "../cells/train.ts";
import { AbortSignalOption, OptionsError } from "../util/options.ts";
import { CheckpointOptions } from "./checkpointing.ts";
import { lrSchedule } from "./schedule.ts";
import { StopWhen } from "./stop-rules.ts";

/** `lora`: LoRA options to add adapters, or false for full fine-tuning (the adapters are removed). */
export const LoraChoice = z.union([
  z.literal(false),
  z
    .object({
      rank: z.number().int().min(1).optional(),
      alpha: z.number().positive().optional(),
      dropout: z.number().min(0).lt(1).optional(),
      targets: LoraTargets.optional(),
      seed: z.number().int().nonnegative().optional(),
    })
    .strict(),
]);
export type LoraChoice = z.output<typeof LoraChoice>;

export const SCHEDULES = ["constant", "linear", "cosine"] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];

/** `warmupSteps`, for a cell to make optional (a share of the steps) or give a default. */
export const WarmupSteps = z.number().int().min(0);

/** The optimizer's options with a cell's defaults: lr, schedule, warmupSteps, weightDecay, maxGradNorm. */
export function optimizerShape<W extends z.ZodType>(defaults: { lr: number; schedule: ScheduleKind; warmupSteps: W }) {
  return {
    lr: z.number().positive().default(defaults.lr),
    schedule: z.enum(SCHEDULES).default(defaults.schedule),
    warmupSteps: defaults.warmupSteps,
    weightDecay: z.number().min(0).default(0),
    maxGradNorm: z.number().positive().nullable().default(1),
  };
}

/** The options of a cell that trains on batches for steps or epochs: `steps` (optimizer steps) or
 * `epochs` (default: 1 epoch), `batchSize`, `gradientAccumulation`, then the optimizer's with a
 * cosine schedule; `warmupSteps` defaults to the cell's share of the steps (see `batchSchedule`). */
export function batchLoopShape(defaults: { lr: number }) {
  return {
    steps: z.number().int().min(1).optional(),
    epochs: z.number().positive().optional(),
    batchSize: z.number().int().min(1).default(8),
    gradientAccumulation: z.number().int().min(1).default(1),
    ...optimizerShape({ lr: defaults.lr, schedule: "cosine", warmupSteps: WarmupSteps.optional() }),
  };
}

/** The options that run a training cell, last in its schema: where to save checkpoints and
 * resume from, the seed of the data order (and of sampling), the live display, a signal to
 * stop the run, and the stop rules. */
export const runShape = {
  checkpoint: CheckpointOptions.optional(),
  /** Continue from a checkpoint of `checkpoint.store`: "latest", "best" or a name. */
  resume: z.string().optional(),
  /** Data order (a new shuffle each epoch) and, for RL, sampling. */
  seed: z.number().int().nonnegative().default(0),
  /** Live chart and progress bar. */
  display: z.boolean().default(true),
  /** Checked before each request to the bridge: an abort stops the run there. */
  signal: AbortSignalOption.optional(),
  /** When to stop before the last step (see StopWhen); the reason is in the result. */
  stopWhen: StopWhen,
};
/** The parsed options of `runShape`, as the training loop reads them. */
export type RunOptions = z.output<z.ZodObject<typeof runShape>>;

/** The step metrics every step-or-epoch cell records (each adds its own). */
export const batchStepShape = {
  step: z.number().int(),
  /** Epochs done after the step (fractional). */
  epoch: z.number(),
  /** The step's loss before its update; null when not finite. */
  loss: z.number().nullable(),
  lr: z.number(),
  /** Before clipping; null when not finite. */
  gradNorm: z.number().nullable(),
  /** The update was refused for a non-finite loss or gradient (the weights stayed). */
  skipped: z.boolean(),
};

/** The parsed options `batchSchedule` reads. */
export interface BatchLoopOptions {
  steps?: number;
  epochs?: number;
  batchSize: number;
  gradientAccumulation: number;
  lr: number;
  schedule: ScheduleKind;
  warmupSteps?: number;
}

/** Rejects `steps` with `epochs`, and `resume` without `checkpoint`; `cell` names the cell in the message. */
export function checkLoopOptions(
  o: { steps?: number; epochs?: number; resume?: string; checkpoint?: unknown },
  cell: string,
): void {
  if (o.steps !== undefined && o.epochs !== undefined)
    throw new OptionsError(`${cell}: give option "steps" or option "epochs", not both`);
  if (o.resume !== undefined && !o.checkpoint)
    throw new OptionsError(`${cell}: option "resume" needs option "checkpoint" (where to resume from)`);
}

/** The model after the `lora` option: adapters removed (false), added (options), or as it is. */
export async function applyLoraChoice(model: Model, lora: LoraChoice | undefined): Promise<Model> {
  if (lora === false) return removeLora(model);
  if (lora) return applyLora(model, lora);
  return model;
}

/** A run over `examples` training examples: examples per optimizer step, the steps (`steps`, or
 * `epochs` rounded up, at least 1) and the learning rate by step, with `warmupShare` of the steps
 * as warmup unless `warmupSteps` is given. */
export function batchSchedule(
  o: BatchLoopOptions,
  examples: number,
  warmupShare: number,
): { perStep: number; totalSteps: number; lr: (step: number) => number } {
  const perStep = o.batchSize * o.gradientAccumulation;
  const totalSteps = o.steps ?? Math.max(1, Math.ceil(((o.epochs ?? 1) * examples) / perStep));
  const warmupSteps = o.warmupSteps ?? Math.floor(warmupShare * totalSteps);
  const lr = lrSchedule({
    kind: o.schedule,
    lr: o.lr,
    warmupSteps: Math.min(warmupSteps, totalSteps - 1),
    totalSteps: o.schedule === "constant" ? undefined : totalSteps,
  });
  return { perStep, totalSteps, lr };
}
