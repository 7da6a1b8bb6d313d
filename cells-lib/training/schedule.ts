/** Learning-rate schedules, as Hugging Face's get_*_schedule_with_warmup compute them: a
 * linear warmup from 0, then constant, linear decay to 0, or half a cosine to 0. `step` is the
 * 0-based optimizer step about to be taken. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";

export const LrScheduleOptions = z
  .object({
    kind: z.enum(["constant", "linear", "cosine"]).default("constant"),
    lr: z.number().positive(),
    warmupSteps: z.number().int().nonnegative().default(0),
    /** Required by "linear" and "cosine": the step at which the rate reaches its floor. */
    totalSteps: z.number().int().positive().optional(),
    /** Floor of the decay, as a fraction of lr (0 to 1). */
    minLrRatio: z.number().min(0).max(1).default(0),
  })
  .strict()
  .refine((o) => o.kind === "constant" || o.totalSteps !== undefined, {
    message: "totalSteps is required for linear and cosine schedules",
    path: ["totalSteps"],
  })
  .refine((o) => o.totalSteps === undefined || o.totalSteps > o.warmupSteps, {
    message: "totalSteps must be greater than warmupSteps",
    path: ["totalSteps"],
  });
export type LrScheduleOptions = z.input<typeof LrScheduleOptions>;

/** A pure function from step to learning rate. */
export function lrSchedule(options: LrScheduleOptions): (step: number) => number {
  const o = parseOptions(LrScheduleOptions, options, "lrSchedule");
  return (step: number) => {
    if (!Number.isInteger(step) || step < 0)
      throw new Error(`lrSchedule: step must be a non-negative integer, got ${step}`);
    if (step < o.warmupSteps) return (o.lr * step) / o.warmupSteps;
    if (o.kind === "constant") return o.lr;
    const total = o.totalSteps!;
    const progress = Math.min(1, (step - o.warmupSteps) / (total - o.warmupSteps));
    const decay = o.kind === "linear" ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
    return o.lr * (o.minLrRatio + (1 - o.minLrRatio) * decay);
  };
}
