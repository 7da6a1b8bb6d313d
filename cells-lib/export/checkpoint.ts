/** exportCheckpoint: a training checkpoint on disk → an exported model, as `thinkcells export`
 * does it. */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import process from "node:process";
import { z } from "zod";
import type { BridgeClient } from "../bridge/client.ts";
import { MODEL_DTYPES } from "../bridge/protocol.ts";
import { loadModel } from "../cells/model.ts";
import { bridge } from "../cells/session.ts";
import { loadState } from "../cells/train.ts";
import { parseRecord } from "../checkpoints/record.ts";
import type { JsonObject } from "../checkpoints/store.ts";
import { loadTokenizer } from "../tokenizer/tokenizer.ts";
import { parseOptions } from "../util/options.ts";
import { DEFAULT_SHARD_BYTES, type ExportResult, exportModel } from "./export-model.ts";
import { ModelCardInfo } from "./model-card.ts";

const ExportCheckpointOptions = z
  .object({
    /** The base model directory; default: the checkpoint's `meta.base_model`. Required for a
     * bare saveState directory. */
    base: z.string().min(1).optional(),
    onnx: z.boolean().default(false),
    dtype: z.enum(MODEL_DTYPES).default("auto"),
    shardBytes: z.number().int().positive().nullable().default(DEFAULT_SHARD_BYTES),
    /** Card fields that override what the checkpoint's metadata says. */
    card: ModelCardInfo.partial().default({}),
    /** The bridge model name used while exporting (unloaded afterwards). */
    name: z.string().min(1).max(128).optional(),
    client: z.custom<BridgeClient>((v) => typeof v === "object" && v !== null, "a BridgeClient").optional(),
  })
  .strict();
export type ExportCheckpointOptions = z.input<typeof ExportCheckpointOptions>;

export interface CheckpointSource {
  /** The saveState directory. */
  stateDir: string;
  /** The commit record's metadata ({} for a bare saveState directory). */
  meta: JsonObject;
}

const isFile = (p: string) =>
  stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

/** Finds the training state in a checkpoint directory (`.checkpoint.json` + `state/`, as the
 * local checkpoint store writes it) or a bare saveState directory (`state.json`). */
export async function readCheckpointDir(dir: string): Promise<CheckpointSource> {
  const root = path.resolve(dir);
  const s = await stat(root).catch(() => undefined);
  if (!s?.isDirectory()) throw new Error(`${root}: no such checkpoint directory`);
  const recordPath = path.join(root, ".checkpoint.json");
  if (await isFile(recordPath)) {
    const record = parseRecord(await readFile(recordPath, "utf8"), recordPath);
    for (const stateDir of [path.join(root, "state"), root]) {
      if (await isFile(path.join(stateDir, "state.json"))) return { stateDir, meta: record.meta };
    }
    throw new Error(`${root}: the checkpoint has no training state (state/state.json is missing)`);
  }
  if (await isFile(path.join(root, "state.json"))) return { stateDir: root, meta: {} };
  if (await isFile(path.join(root, "state", "state.json"))) return { stateDir: path.join(root, "state"), meta: {} };
  throw new Error(`${root}: neither a checkpoint (.checkpoint.json + state/) nor a saveState directory (state.json)`);
}

const str = (v: unknown) => (typeof v === "string" && v.length > 0 ? v : undefined);
const obj = (v: unknown) => (typeof v === "object" && v !== null && !Array.isArray(v) ? (v as JsonObject) : {});

/** The card's fields from a checkpoint's metadata: `step`, `metrics`, and `algorithm` / `data`
 * from `meta.loop` (or `meta` itself). */
export function cardFromMeta(meta: JsonObject): z.input<typeof ModelCardInfo> {
  const loop = obj(meta.loop);
  const metrics: Record<string, number | string | boolean | null> = {};
  for (const [k, v] of Object.entries(obj(meta.metrics))) {
    if (v === null || typeof v === "number" || typeof v === "string" || typeof v === "boolean") metrics[k] = v;
  }
  const dataOf = (v: unknown) =>
    str(v) ??
    (Array.isArray(v) && v.every((x) => typeof x === "string" && x) && v.length ? (v as string[]) : undefined);
  const step = meta.step;
  return {
    ...(str(meta.base_model) ? { baseModel: str(meta.base_model) } : {}),
    ...(typeof step === "number" && Number.isInteger(step) && step >= 0 ? { steps: step } : {}),
    ...(Object.keys(metrics).length ? { metrics } : {}),
    ...((str(loop.algorithm) ?? str(meta.algorithm)) ? { algorithm: str(loop.algorithm) ?? str(meta.algorithm) } : {}),
    ...((dataOf(loop.data) ?? dataOf(loop.dataset) ?? dataOf(meta.data))
      ? { data: dataOf(loop.data) ?? dataOf(loop.dataset) ?? dataOf(meta.data) }
      : {}),
  };
}

/**
 * Loads the checkpoint's base model into the bridge under its own name, restores the training
 * state (re-creating its LoRA adapters), exports it with `exportModel`, and unloads it. The
 * card comes from the checkpoint's metadata (step, metrics, and `loop.algorithm` /
 * `loop.data` when the loop recorded them), overridden by `options.card`.
 */
export async function exportCheckpoint(
  checkpointDir: string,
  outDir: string,
  options: ExportCheckpointOptions = {},
): Promise<ExportResult & { step: number; baseModel: string }> {
  const o = parseOptions(ExportCheckpointOptions, options, "exportCheckpoint");
  const { stateDir, meta } = await readCheckpointDir(checkpointDir);
  const base = o.base ?? str(meta.base_model);
  if (!base) {
    throw new Error(
      `${path.resolve(checkpointDir)}: the checkpoint does not name its base model (meta.base_model); pass the base model directory (--base MODEL_DIR)`,
    );
  }
  const client = o.client ?? (await bridge());
  const name = o.name ?? `export-${process.pid}`;
  const tokenizer = await loadTokenizer(base);
  const model = await loadModel(base, { client, name });
  try {
    const { step } = await loadState(model, stateDir);
    const fromMeta = cardFromMeta(meta);
    const card = {
      ...fromMeta,
      baseModel: fromMeta.baseModel ?? path.resolve(base),
      steps: fromMeta.steps ?? step,
      ...stripUndefined(o.card),
    };
    const result = await exportModel(model, tokenizer, outDir, {
      card,
      onnx: o.onnx,
      dtype: o.dtype,
      shardBytes: o.shardBytes,
    });
    return { ...result, step, baseModel: path.resolve(base) };
  } finally {
    await client.call("unload_model", { name }).catch(() => {});
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
