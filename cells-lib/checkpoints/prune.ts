/** The retention policy as pure functions: which checkpoints are most recent, which are best, and
 * which to delete, testable without any store. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import type { CheckpointEntry } from "./store.ts";

export const pruneShape = {
  /** Keep this many checkpoints with the best metric values (default: 1 with a metric, else 0). */
  keepBest: z.number().int().min(0).optional(),
  /** The key in each checkpoint's `meta.metrics` that ranks checkpoints. */
  metric: z.string().min(1).optional(),
  /** Whether a lower ("min", a loss) or higher ("max", an accuracy) metric is better. */
  mode: z.enum(["min", "max"]).optional(),
  /** Keep this many most recent checkpoints, so training can always resume. */
  keepLast: z.number().int().min(1).default(1),
};

/** The rules zod's shape cannot state: ranking needs a metric, and a metric needs a direction. */
export function checkPruneOptions(
  o: { keepBest?: number; metric?: string; mode?: "min" | "max" },
  ctx: z.RefinementCtx,
): void {
  if (o.keepBest && o.metric === undefined)
    ctx.addIssue({ code: "custom", path: ["metric"], message: "keepBest needs the metric that ranks checkpoints" });
  if (o.metric !== undefined && o.mode === undefined)
    ctx.addIssue({
      code: "custom",
      path: ["mode"],
      message: `say whether a lower ("min") or higher ("max") ${o.metric} is better`,
    });
}

const PruneOptions = z.object(pruneShape).strict().superRefine(checkPruneOptions);
export type PruneOptions = z.input<typeof PruneOptions>;

/** The checkpoint's `meta.metrics[metric]` if it is a finite number (a NaN loss is stored as null). */
export function metricValue(entry: CheckpointEntry, metric: string): number | undefined {
  const metrics = entry.meta.metrics;
  if (typeof metrics !== "object" || metrics === null || Array.isArray(metrics)) return undefined;
  const value = metrics[metric];
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** Most recent first: commit time, then `meta.step`, then name. */
export function newestFirst(a: CheckpointEntry, b: CheckpointEntry): number {
  return (
    b.createdAt.getTime() - a.createdAt.getTime() ||
    stepOf(b) - stepOf(a) ||
    (a.name < b.name ? 1 : a.name > b.name ? -1 : 0)
  );
}

/** Best first; equal values rank the more recent first (same quality, more training). Entries
 * without a value for the metric are left out. */
export function rankByMetric(
  entries: readonly CheckpointEntry[],
  metric: string,
  mode: "min" | "max",
): CheckpointEntry[] {
  const sign = mode === "min" ? 1 : -1;
  return entries
    .filter((e) => metricValue(e, metric) !== undefined)
    .sort((a, b) => sign * (metricValue(a, metric)! - metricValue(b, metric)!) || newestFirst(a, b));
}

/** The entries to delete (in their input order): everything except the `keepLast` most recent
 * and the `keepBest` best by `metric`. */
export function choosePruned(entries: readonly CheckpointEntry[], options: PruneOptions): CheckpointEntry[] {
  const o = parseOptions(PruneOptions, options, "choosePruned");
  const keep = new Set(
    [...entries]
      .sort(newestFirst)
      .slice(0, o.keepLast)
      .map((e) => e.name),
  );
  if (o.metric !== undefined && o.mode !== undefined) {
    for (const e of rankByMetric(entries, o.metric, o.mode).slice(0, o.keepBest ?? 1)) keep.add(e.name);
  }
  return entries.filter((e) => !keep.has(e.name));
}

function stepOf(entry: CheckpointEntry): number {
  return typeof entry.meta.step === "number" ? entry.meta.step : -1;
}
