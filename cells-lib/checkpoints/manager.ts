/** Step-numbered checkpoints in any store, with a retention policy: keep the best K by a metric
 * plus the most recent (so resuming is always possible). Pruning runs only after the new
 * checkpoint is committed, so a failed save never costs an older one. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { checkPruneOptions, choosePruned, newestFirst, pruneShape, rankByMetric } from "./prune.ts";
import { type CheckpointEntry, CheckpointError, type CheckpointMetaInput, type CheckpointStore } from "./store.ts";

const isStore = (v: unknown): boolean =>
  ["put", "get", "list", "delete", "describe"].every(
    (m) => typeof (v as Record<string, unknown> | null)?.[m] === "function",
  );

const ManagerOptions = z
  .object({
    store: z.custom<CheckpointStore>(isStore, "expected a checkpoint store (localStore, driveStore or s3Store)"),
    ...pruneShape,
  })
  .strict()
  .superRefine(checkPruneOptions);
export type CheckpointManagerOptions = z.input<typeof ManagerOptions>;

/** `step-000120`: zero-padded so names sort like steps in file browsers and bucket listings. */
export function stepName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

const STEP_NAME = /^step-\d{6,}$/;

export interface SaveResult {
  saved: CheckpointEntry;
  /** Names deleted by the retention policy. */
  pruned: string[];
}

export class CheckpointManager {
  readonly #o: z.output<typeof ManagerOptions>;

  constructor(options: CheckpointManagerOptions) {
    this.#o = parseOptions(ManagerOptions, options, "CheckpointManager");
  }

  get store(): CheckpointStore {
    return this.#o.store;
  }

  /** Commits `localDir` as `step-NNNNNN` (meta gains `step`), then prunes what the policy no
   * longer keeps. Metric values for ranking go in `meta.metrics`, e.g. `{ metrics: { evalLoss } }`. */
  async save(step: number, localDir: string, meta: CheckpointMetaInput = {}): Promise<SaveResult> {
    if (!Number.isSafeInteger(step) || step < 0)
      throw new CheckpointError(`CheckpointManager.save: step must be a non-negative integer, got ${step}`);
    const saved = await this.store.put(stepName(step), localDir, { ...meta, step });
    const { keepBest, metric, mode, keepLast } = this.#o;
    const pruned = choosePruned(await this.list(), { keepBest, metric, mode, keepLast }).map((e) => e.name);
    for (const name of pruned) await this.store.delete(name);
    return { saved, pruned };
  }

  /** This manager's (step-named) checkpoints, oldest first; other names in the store are left alone. */
  async list(): Promise<CheckpointEntry[]> {
    return (await this.store.list()).filter((e) => STEP_NAME.test(e.name));
  }

  async latest(): Promise<CheckpointEntry | undefined> {
    return (await this.list()).sort(newestFirst)[0];
  }

  /** The best checkpoint by the metric (ties: the more recent); undefined if none has a value. */
  async best(): Promise<CheckpointEntry | undefined> {
    const { metric, mode } = this.#o;
    if (metric === undefined || mode === undefined)
      throw new CheckpointError("CheckpointManager.best: no metric was configured");
    return rankByMetric(await this.list(), metric, mode)[0];
  }

  /** Downloads a checkpoint (by name, or "latest" / "best") into `localDir`, which must be
   * missing or empty, ready for `loadState`. */
  async restore(which: string, localDir: string): Promise<CheckpointEntry> {
    const name =
      which === "latest" ? (await this.latest())?.name : which === "best" ? (await this.best())?.name : which;
    if (name === undefined) {
      throw new CheckpointError(
        `CheckpointManager.restore("${which}"): ` +
          `no ${which === "best" ? `checkpoint has a value for ${this.#o.metric}` : "checkpoints"} in ${this.store.describe()}`,
      );
    }
    return this.store.get(name, localDir);
  }
}
