/** The one training loop behind trainSft, trainDpo and grpoTrainer. A trainer supplies its step,
 * its evaluation and its own state (LoopHooks); the loop owns the rest: resume, the live chart
 * and progress bar, evaluation and checkpoint cadence, the stop rules, the best evaluation and
 * abort, and the kernel's interrupt. Every trainer has the same shape (Trainer): `step()`, `run(n)`,
 * `history`, `model`, `abort()`. */
import { interruptible } from "../cells/interrupt.ts";
import type { Model } from "../cells/model.ts";
import { show } from "../display/show.ts";
import { stopIfAborted } from "./abort.ts";
import type { RunOptions } from "./cell-options.ts";
import { TrainingCheckpoints } from "./checkpointing.ts";
import { decodeLoopState, encodeLoopState, type LoopSchemas, type LoopState, type TrainerKind } from "./loop-state.ts";
import { type Monitor, trainingMonitor } from "./monitor.ts";
import { type EarlyStoppingRule, type StopReason, stopRules } from "./stop-rules.ts";

/** What the loop reads of a step's metrics. */
export type StepRecord = { step: number; gradNorm: number | null };
/** What the loop reads of an evaluation: its step (0 is before training) and its loss. */
export type EvaluationRecord = { step: number; valLoss: number | null };

/** What a trainer declares before it starts. */
export interface LoopConfig<S, E, X> {
  kind: TrainerKind;
  /** The cell, first in messages. */
  cell: string;
  schemas: LoopSchemas<S, E, X>;
  /** The metric that ranks checkpoints ("best") and picks `best` among the evaluations. */
  rank: { metric: string; mode: "min" | "max" };
  earlyStopping?: EarlyStoppingRule;
  options: RunOptions;
}

/** What a trainer does; the loop does everything around it. */
export interface LoopHooks<S, E, X> {
  model: Model;
  /** Where `run()` ends, and the last step's checkpoint and evaluation. */
  totalSteps: number;
  /** Trains step `index` (0-based) and returns its metrics. */
  step(index: number): Promise<S>;
  /** Whether a step's update was skipped for a non-finite loss or gradient. */
  nonFinite(metrics: S): boolean;
  /** Evaluates every `every` steps and after the last one (and first at step 0 with `atStart`). */
  evaluation?: { every: number; atStart: boolean; run(step: number): Promise<E> };
  /** The trainer's own state, saved in each checkpoint. */
  state(): X;
  /** What a checkpoint is ranked by; default: the evaluation made at its step. */
  checkpointMetrics?(metrics: S): Record<string, number | null>;
  chart: { title: string; metrics: string[]; barInfo?: string[] };
}

export interface Trainer<S, E> {
  readonly kind: TrainerKind;
  readonly model: Model;
  readonly history: S[];
  readonly evaluations: E[];
  /** The evaluation after training started that ranks first by the rank metric. */
  readonly best: E | undefined;
  /** Why the last `run` stopped before its end (a stop rule), or null. */
  readonly stopped: StopReason | null;
  /** The checkpoints saved by this trainer, in order. */
  readonly checkpoints: string[];
  /** One step, with its evaluation and checkpoint when they are due. */
  step(): Promise<S>;
  /** `count` steps (default: up to the total), with the live chart and progress bar; ends early when a stop rule says so.
   * The kernel's interrupt stops it at a step boundary (an InterruptedError); the next `run()` continues. */
  run(count?: number): Promise<S[]>;
  /** Stops the run before its next request to the bridge (as the `signal` option does). */
  abort(reason?: unknown): void;
}

export class TrainingLoop<S extends StepRecord, E extends EvaluationRecord, X> {
  private readonly controller = new AbortController();
  /** The `signal` option and `abort()`. */
  private readonly stop: AbortSignal;
  /** While a run or step goes on: `stop` or the kernel's interrupt. */
  private running: AbortSignal | undefined;
  private readonly checkpoints: { store: TrainingCheckpoints; every: number } | undefined;

  constructor(readonly config: LoopConfig<S, E, X>) {
    const { checkpoint, signal } = config.options;
    this.checkpoints = checkpoint && {
      store: new TrainingCheckpoints(checkpoint, config.rank.metric, config.rank.mode),
      every: checkpoint.every,
    };
    this.stop = signal ? AbortSignal.any([signal, this.controller.signal]) : this.controller.signal;
  }

  /** Aborted by the `signal` option, by `abort()` and, during a run or step, by the kernel's
   * interrupt: trainers check it between their requests (read it then, not before). */
  get signal(): AbortSignal {
    return this.running ?? this.stop;
  }

  /** The loop state of the checkpoint the `resume` option names (undefined when not resuming),
   * its training state loaded into `model`, and the model's handle as that left it (a saved
   * state re-creates its adapters). A checkpoint another trainer saved is refused. */
  async resume(model: Model): Promise<{ resumed: LoopState<S, E, X> | undefined; model: Model }> {
    const { kind, cell, schemas, options } = this.config;
    if (options.resume === undefined || !this.checkpoints) return { resumed: undefined, model };
    const { loop, model: loaded } = await this.checkpoints.store.resume(model, options.resume, (saved, name) =>
      decodeLoopState(kind, schemas, saved, `${cell}: checkpoint "${name}"`),
    );
    return { resumed: loop, model: loaded };
  }

  /** The trainer, continuing from `resumed`; `extra` adds the trainer's own fields. */
  start<T extends object>(
    hooks: LoopHooks<S, E, X>,
    resumed: LoopState<S, E, X> | undefined,
    extra: T,
  ): Trainer<S, E> & T {
    const { kind, cell, options, rank } = this.config;
    const { model, evaluation } = hooks;
    const checkpoints = this.checkpoints;
    const history = resumed?.history ?? [];
    const evaluations = resumed?.evaluations ?? [];
    const saved: string[] = [];
    const rules = stopRules(options.stopWhen, this.config.earlyStopping);
    // The rules go on from what was recorded before the checkpoint (their verdicts then are past).
    for (const s of history) rules.afterStep(s.step, s.gradNorm, hooks.nonFinite(s));
    for (const e of evaluations) rules.afterEvaluation(e.step, e.valLoss, e);
    let stopped: StopReason | null = null;
    let monitor: Monitor | undefined;
    // A step applied whose evaluation and checkpoint an interrupt stopped: done before anything else.
    let unfinished: { metrics: S; stop: StopReason | null } | undefined;

    const evaluate = async (step: number): Promise<StopReason | null> => {
      const e = await evaluation!.run(step);
      evaluations.push(e);
      monitor?.record(step, e);
      return rules.afterEvaluation(step, e.valLoss, e);
    };

    /** The step's evaluation and checkpoint, when due. */
    const finish = async (): Promise<void> => {
      const { metrics, stop } = unfinished!;
      const n = metrics.step;
      const last = n === hooks.totalSteps;
      const due = evaluation && (n % evaluation.every === 0 || last) && evaluations.at(-1)?.step !== n;
      const evaluationStop = due ? await evaluate(n) : null;
      stopped = stop ?? evaluationStop;
      if (checkpoints && (n % checkpoints.every === 0 || last || stopped)) {
        const latest = evaluations.at(-1);
        const ranked = hooks.checkpointMetrics?.(metrics) ?? (latest?.step === n ? { ...latest } : {});
        const loop = encodeLoopState(kind, { history, evaluations, state: hooks.state() });
        saved.push(await checkpoints.store.save(model, { step: n, loop }, ranked));
      }
      unfinished = undefined;
      if (stopped && options.display) show(`${hooks.chart.title} stopped after step ${n}: ${stopped.message}`);
    };

    const step = async (): Promise<S> => {
      if (unfinished) await finish();
      await stopIfAborted(model, this.signal, false);
      if (evaluation?.atStart && history.length === 0 && evaluations.length === 0) await evaluate(0);
      const metrics = await hooks.step(history.length);
      history.push(metrics);
      monitor?.record(metrics.step, metrics, true);
      // The stop rules see each step once, so their verdict waits here for an interrupted finish.
      unfinished = { metrics, stop: rules.afterStep(metrics.step, metrics.gradNorm, hooks.nonFinite(metrics)) };
      await finish();
      return metrics;
    };

    const runTo = async (target: number): Promise<S[]> => {
      stopped = null;
      monitor = trainingMonitor({ ...hooks.chart, totalSteps: target - history.length, display: options.display });
      for (const s of history) monitor.record(s.step, s);
      for (const e of evaluations) monitor.record(e.step, e);
      const out: S[] = [];
      try {
        if (unfinished) await finish();
        while (history.length < target && !stopped) out.push(await step());
      } finally {
        monitor.close();
        monitor = undefined;
      }
      return out;
    };

    /** Where an interrupt left the run that was to end at step `target`, and how to go on. */
    const interrupted = (target: number): string => {
      const done = history.length;
      const until =
        target < hooks.totalSteps ? ` (run(${target - done}) ends at step ${target}, as this run would have)` : "";
      const more = done < target ? `continues from step ${done + 1}${until}` : "";
      const next = unfinished
        ? `, in its evaluation: the trainer's run() first finishes step ${done}'s evaluation${more && `, then ${more}`}`
        : `; nothing of step ${done + 1} was applied: the trainer's run() ${more}`;
      const at = done === 0 ? "before its first step" : `after step ${done} of ${hooks.totalSteps}`;
      return `${at}${next}. Nothing is lost (the trainer is also lastInterrupt().trainer).`;
    };

    /** `operation` under the kernel's interrupt, which stops it with an InterruptedError. */
    const interruptibly = <T>(operation: () => Promise<T>, target: number): Promise<T> =>
      interruptible({ cell, signal: this.stop, detail: () => interrupted(target), trainer }, async (signal) => {
        this.running = signal;
        try {
          return await operation();
        } finally {
          this.running = undefined;
        }
      });

    const better = (a: number, b: number) => (rank.mode === "min" ? a < b : a > b);
    const trainer: Trainer<S, E> = {
      kind,
      model,
      history,
      evaluations,
      get best() {
        let best: { e: E; value: number } | undefined;
        for (const e of evaluations) {
          const value = metricOf(e, rank.metric);
          if (e.step > 0 && value !== undefined && (!best || better(value, best.value))) best = { e, value };
        }
        return best?.e;
      },
      get stopped() {
        return stopped;
      },
      checkpoints: saved,
      step: () => interruptibly(step, history.length + 1),
      run: (count = hooks.totalSteps - history.length) => {
        const target = Math.min(hooks.totalSteps, history.length + count);
        return interruptibly(() => runTo(target), target);
      },
      abort: (reason) => this.controller.abort(reason),
    };
    return Object.assign(trainer, extra);
  }
}

function metricOf(e: Readonly<Record<string, unknown>>, name: string): number | undefined {
  const value = e[name];
  return typeof value === "number" ? value : undefined;
}
