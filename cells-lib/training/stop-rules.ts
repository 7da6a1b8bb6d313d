/** The rules that end a training run before its last step, as a training dashboard has them:
 * the evaluation loss rising evaluation after evaluation, the gradient norm passing a
 * threshold, non-finite steps in a row, and (when asked for) early stopping on a metric. Each
 * rule reads only what the loop records, so a resumed run rebuilds them from its history. */
import { z } from "zod";
import { type EarlyStopping, earlyStopping } from "./early-stopping.ts";

/** The `stopWhen` option of every training cell; null turns a rule off. */
export const StopWhen = z
  .object({
    /** Stop when the evaluation loss has risen this many evaluations in a row. */
    lossRises: z.number().int().min(1).nullable().default(5),
    /** Stop when a step's gradient norm (before clipping) is above this. */
    gradNormAbove: z.number().positive().nullable().default(1000),
    /** Stop after this many steps in a row whose update was skipped for a non-finite loss or gradient. */
    nonFiniteSteps: z.number().int().min(1).nullable().default(3),
  })
  .strict()
  .prefault({});
export type StopWhen = z.output<typeof StopWhen>;

export const STOP_RULES = ["lossRises", "gradNormAbove", "nonFiniteSteps", "earlyStopping"] as const;
export type StopRule = (typeof STOP_RULES)[number];

/** Why a run stopped before its last step. */
export interface StopReason {
  rule: StopRule;
  /** The step after which it stopped. */
  step: number;
  message: string;
}

/** Early stopping on an evaluation metric (a cell's `earlyStopping` option, resolved). */
export interface EarlyStoppingRule {
  metric: string;
  mode: "min" | "max";
  patience: number;
  minDelta: number;
}

export interface StopRules {
  /** Records a step; the reason to stop after it, or null. */
  afterStep(step: number, gradNorm: number | null, nonFinite: boolean): StopReason | null;
  /** Records an evaluation: its loss and, for early stopping, its metrics. */
  afterEvaluation(step: number, loss: number | null, metrics: Readonly<Record<string, unknown>>): StopReason | null;
}

export function stopRules(when: StopWhen, early?: EarlyStoppingRule): StopRules {
  let nonFiniteRun = 0;
  let rises = 0;
  let lastLoss: number | null = null;
  const stopper: EarlyStopping | undefined = early && earlyStopping(early);
  return {
    afterStep(step, gradNorm, nonFinite) {
      nonFiniteRun = nonFinite ? nonFiniteRun + 1 : 0;
      if (when.nonFiniteSteps !== null && nonFiniteRun >= when.nonFiniteSteps) {
        const first = step - nonFiniteRun + 1;
        return {
          rule: "nonFiniteSteps",
          step,
          message: `steps ${first} to ${step} (${nonFiniteRun} in a row) had a non-finite loss or gradient: their updates were skipped`,
        };
      }
      if (when.gradNormAbove !== null && gradNorm !== null && gradNorm > when.gradNormAbove) {
        return {
          rule: "gradNormAbove",
          step,
          message: `the gradient norm at step ${step}, ${gradNorm.toPrecision(4)}, is above stopWhen.gradNormAbove (${when.gradNormAbove})`,
        };
      }
      return null;
    },
    afterEvaluation(step, loss, metrics) {
      if (loss !== null) {
        rises = lastLoss !== null && loss > lastLoss ? rises + 1 : 0;
        lastLoss = loss;
        if (when.lossRises !== null && rises >= when.lossRises) {
          return {
            rule: "lossRises",
            step,
            message: `the evaluation loss rose ${rises} evaluations in a row, to ${loss.toPrecision(4)} at step ${step}`,
          };
        }
      }
      const value = early && metrics[early.metric];
      if (stopper && typeof value === "number" && stopper.update(value)) {
        return {
          rule: "earlyStopping",
          step,
          message: `early stopping: ${early!.metric} has not improved on ${stopper.best} for ${stopper.stale} evaluations`,
        };
      }
      return null;
    },
  };
}
