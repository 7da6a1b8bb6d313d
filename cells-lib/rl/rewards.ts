/** The reward-function contract and the weighted combination of several reward functions. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { mean, present, sampleStd } from "./stats.ts";

/** What a reward function sees about one sampled completion. */
export interface RewardContext<Row = unknown> {
  prompt: string;
  completion: string;
  completionIds: number[];
  reference?: string;
  /** The dataset row the prompt came from. */
  row: Row;
  /** The training step, for rewards that change over training. */
  step: number;
}

/** A finite score, or null for "no opinion on this sample" (left out of its weighted sum). */
export type RewardFn<Row = unknown> = (ctx: RewardContext<Row>) => number | null | Promise<number | null>;

export interface RewardSpec<Row = unknown> {
  fn: RewardFn<Row>;
  weight: number;
}
export type NamedRewardSpec<Row = unknown> = RewardSpec<Row> & { name: string };
export type RewardSpecs<Row = unknown> = Readonly<Record<string, RewardSpec<Row>>> | readonly NamedRewardSpec<Row>[];

export class RewardError extends Error {
  override name = "RewardError";
  constructor(
    readonly rewardName: string,
    readonly sampleIndex: number,
    readonly completionExcerpt: string,
    readonly problem: string,
    cause: unknown,
  ) {
    super(`reward "${rewardName}" failed on sample ${sampleIndex} (completion ${completionExcerpt}): ${problem}`, {
      cause,
    });
  }
}

export interface RewardProblem {
  reward: string;
  sample: number;
  message: string;
}

export interface RewardStats {
  /** Over the samples this function gave a value; null when it gave none. */
  mean: number | null;
  /** Unbiased; 0 for a single value, null for none. */
  std: number | null;
  count: number;
}

export interface RewardScores {
  /** Weighted sum over the functions that gave a value; null when none did, or when the
   * sample was skipped after a failure. */
  totals: (number | null)[];
  /** Unweighted values per function, per sample (null: no value, or failed). */
  values: Record<string, (number | null)[]>;
  stats: Record<string, RewardStats>;
  /** Failures under onError "skip-sample", in sample order. */
  problems: RewardProblem[];
}

/** setTimeout's longest delay: a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** How long one reward call may take, in ms, before it counts as failed. A synchronous function
 * cannot be interrupted: the limit catches promises that never settle (or settle too late). */
export const RewardTimeoutMs = z.number().int().min(1).max(MAX_TIMER_MS).default(60_000);

const ScoreOptions = z
  .object({
    /** "stop" throws a RewardError at the first failure; "skip-sample" gives the sample a null
     * total (hence advantage 0) and records the failure in `problems`. */
    onError: z.enum(["skip-sample", "stop"]).default("stop"),
    /** A call that gives no result within this many ms fails like a throwing one. */
    timeoutMs: RewardTimeoutMs,
  })
  .strict();
export type ScoreOptions = z.input<typeof ScoreOptions>;

export interface RewardCombiner<Row = unknown> {
  /** Runs every function on every sample concurrently (they may be async). */
  score(samples: readonly RewardContext<Row>[], options?: ScoreOptions): Promise<RewardScores>;
}

const Spec = z
  .object({
    fn: z.custom<RewardFn>((v) => typeof v === "function", "fn must be a reward function (ctx) => number | null"),
    weight: z.number().finite(),
  })
  .strict();
const SpecRecord = z
  .record(z.string().min(1), Spec)
  .refine((r) => Object.keys(r).length > 0, "give at least one reward function");
const SpecList = z
  .array(Spec.extend({ name: z.string().min(1) }))
  .min(1, "give at least one reward function")
  .refine((list) => new Set(list.map((s) => s.name)).size === list.length, "reward names must be unique");

/**
 * Combines named, weighted reward functions. The specs (or a getter returning them) are read
 * again on every `score` call and nothing is copied out of them, so a reward function
 * redefined in a notebook cell takes effect at the next training step without a restart —
 * provided the loop sees the new function: pass a getter such as
 * `() => ({ correctness: { fn: correctness, weight: 1 } })`, mutate the specs object, or
 * simply call combineRewards again each step (it is cheap).
 */
export function combineRewards<Row = unknown>(specs: RewardSpecs<Row> | (() => RewardSpecs<Row>)): RewardCombiner<Row> {
  const current = (): NamedRewardSpec<Row>[] => resolveSpecs(typeof specs === "function" ? specs() : specs);
  current();
  return {
    async score(samples, options) {
      const o = parseOptions(ScoreOptions, options, "combineRewards.score");
      return scoreSamples(current(), samples, o);
    },
  };
}

function resolveSpecs<Row>(specs: RewardSpecs<Row>): NamedRewardSpec<Row>[] {
  if (Array.isArray(specs)) {
    parseOptions(SpecList, specs, "combineRewards");
    return [...(specs as readonly NamedRewardSpec<Row>[])];
  }
  parseOptions(SpecRecord, specs, "combineRewards");
  return Object.entries(specs as Record<string, RewardSpec<Row>>).map(([name, s]) => ({
    name,
    fn: s.fn,
    weight: s.weight,
  }));
}

type Outcome = { value: number | null } | { problem: string; cause: unknown };

async function scoreSamples<Row>(
  specs: NamedRewardSpec<Row>[],
  samples: readonly RewardContext<Row>[],
  { onError, timeoutMs }: z.output<typeof ScoreOptions>,
): Promise<RewardScores> {
  const outcomes = await Promise.all(
    samples.map((ctx) => Promise.all(specs.map((s) => withinTime(evaluate(s.fn, ctx), timeoutMs)))),
  );
  const values: Record<string, (number | null)[]> = Object.fromEntries(specs.map((s) => [s.name, []]));
  const problems: RewardProblem[] = [];
  const totals: (number | null)[] = [];
  for (const [i, row] of outcomes.entries()) {
    let total: number | null = null;
    let failed = false;
    for (const [k, outcome] of row.entries()) {
      const spec = specs[k]!;
      if ("problem" in outcome) {
        if (onError === "stop")
          throw new RewardError(spec.name, i, excerpt(samples[i]!.completion), outcome.problem, outcome.cause);
        problems.push({ reward: spec.name, sample: i, message: outcome.problem });
        failed = true;
        values[spec.name]!.push(null);
      } else {
        values[spec.name]!.push(outcome.value);
        if (outcome.value !== null) total = (total ?? 0) + spec.weight * outcome.value;
      }
    }
    totals.push(failed ? null : total);
  }
  const stats = Object.fromEntries(specs.map((s) => [s.name, statsOf(values[s.name]!)]));
  return { totals, values, stats, problems };
}

/** The outcome, or a problem once `timeoutMs` has passed without one (the call itself cannot be
 * stopped: whatever it resolves to later is ignored). */
async function withinTime(outcome: Promise<Outcome>, timeoutMs: number): Promise<Outcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<Outcome>((resolve) => {
    timer = setTimeout(
      () => resolve({ problem: `gave no result within the time limit of ${timeoutMs} ms`, cause: undefined }),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([outcome, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Never rejects: a throw, a rejection or a bad value becomes a problem to report. */
async function evaluate<Row>(fn: RewardFn<Row>, ctx: RewardContext<Row>): Promise<Outcome> {
  try {
    const value: unknown = await fn(ctx);
    if (value === null || (typeof value === "number" && Number.isFinite(value))) return { value };
    return { problem: `returned ${describe(value)}; a reward must be a finite number or null`, cause: undefined };
  } catch (error) {
    return { problem: error instanceof Error ? error.message : String(error), cause: error };
  }
}

function describe(value: unknown): string {
  return typeof value === "number" || value === undefined
    ? String(value)
    : `a ${typeof value} (${JSON.stringify(value)?.slice(0, 40)})`;
}

function statsOf(values: readonly (number | null)[]): RewardStats {
  const xs = present(values);
  if (xs.length === 0) return { mean: null, std: null, count: 0 };
  return { mean: mean(xs), std: sampleStd(xs), count: xs.length };
}

const EXCERPT_CHARS = 60;

function excerpt(completion: string): string {
  const flat = completion.replace(/\s+/g, " ").trim();
  return JSON.stringify(flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}…` : flat);
}
