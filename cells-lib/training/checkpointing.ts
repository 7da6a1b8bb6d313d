/** Checkpoints of a training cell: the bridge's state (weights/adapters, optimizer, RNG, step)
 * saved to a local staging directory, then committed to a store with the loop's own state
 * (data-order cursor, metric history) in the metadata, so a resumed run continues exactly. */
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import type { Model } from "../cells/model.ts";
import { loadState, saveState } from "../cells/train.ts";
import { localStore } from "../checkpoints/local-store.ts";
import { CheckpointManager } from "../checkpoints/manager.ts";
import type { CheckpointStore, JsonObject, JsonValue } from "../checkpoints/store.ts";
import { stagingDir } from "../util/atomic.ts";

const isStore = (v: unknown) => typeof v === "object" && v !== null && typeof (v as CheckpointStore).put === "function";

/** The `checkpoint` option of training cells. */
export const CheckpointOptions = z
  .object({
    /** A store (localStore, driveStore, s3Store) or a local directory. */
    store: z.union([
      z.string().min(1),
      z.custom<CheckpointStore>(isStore, "expected a directory or a checkpoint store"),
    ]),
    /** Save every this many steps (and at the end). */
    every: z.number().int().min(1),
    /** Keep the best K by `metric` (plus the latest, always). */
    keepBest: z.number().int().min(1).default(3),
    /** Keep the latest N regardless of the metric. */
    keepLast: z.number().int().min(1).default(1),
  })
  .strict();
export type CheckpointOptions = z.input<typeof CheckpointOptions>;

export interface LoopState {
  step: number;
  /** Whatever the loop needs to continue (history, evaluations, early-stopping state). */
  loop: JsonObject;
}

export class TrainingCheckpoints {
  readonly manager: CheckpointManager;

  constructor(options: z.output<typeof CheckpointOptions>, metric: string, mode: "min" | "max") {
    const store = typeof options.store === "string" ? localStore(options.store) : options.store;
    this.manager = new CheckpointManager({
      store,
      keepBest: options.keepBest,
      keepLast: options.keepLast,
      metric,
      mode,
    });
  }

  async save(model: Model, state: LoopState, metrics: Record<string, number | null | undefined>): Promise<string> {
    const staging = await stagingDir(os.tmpdir(), "thinkcells-ckpt");
    try {
      await saveState(model, path.join(staging, "state"));
      // The base model's directory lets `thinkcells export` rebuild the model from a checkpoint.
      const { saved } = await this.manager.save(state.step, staging, {
        metrics,
        loop: state.loop,
        base_model: model.info.path,
      });
      return saved.name;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** Loads a checkpoint ("latest", "best" or a name) into the model and returns its loop state,
   * as `read` makes it of the metadata, and the model's handle as the state left it; `read`
   * runs first, so a checkpoint it refuses leaves the model as it was. */
  async resume<T>(
    model: Model,
    which: string,
    read: (loop: JsonValue | undefined, checkpoint: string) => T,
  ): Promise<{ loop: T; model: Model }> {
    const staging = await stagingDir(os.tmpdir(), "thinkcells-ckpt");
    try {
      const dir = path.join(staging, "checkpoint");
      const entry = await this.manager.restore(which, dir);
      const loop = read(entry.meta.loop, entry.name);
      const loaded = await loadState(model, path.join(dir, "state"));
      return { loop, model: loaded.model };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
}
