/** Cells that load models into the bridge and report on it. */

import path from "node:path";
import { z } from "zod";
import type { BridgeClient, OpResponse } from "../bridge/client.ts";
import { MODEL_DTYPES, type ModelInfo } from "../bridge/protocol.ts";
import { parseOptions } from "../util/options.ts";
import { bridge } from "./session.ts";

/** A model held by the bridge, addressed by name. */
export interface Model {
  readonly name: string;
  readonly info: ModelInfo;
  readonly client: BridgeClient;
}

const LoadModelOptions = z
  .object({
    /** The name the bridge keeps it under. Loading again under a name this client holds replaces
     * that model; under one another connected client holds, only with `replace`. */
    name: z.string().min(1).max(128).default("default"),
    dtype: z.enum(MODEL_DTYPES).default("auto"),
    /** Extends the context with RoPE scaling (linear, dynamic NTK, YaRN or Llama 3's rule) to
     * `targetLength` positions, or by `factor`. */
    ropeScaling: z
      .object({
        type: z.enum(["linear", "dynamic", "yarn", "llama3"]),
        factor: z.number().min(1).optional(),
        targetLength: z.number().int().positive().optional(),
      })
      .strict()
      .refine((r) => r.factor !== undefined || r.targetLength !== undefined, { message: "give factor or targetLength" })
      .optional(),
    /** Keep the decoder's linear weights quantized (int8, or 4-bit NF4): frozen, for LoRA on top. */
    quantize: z.enum(["int8", "nf4"]).optional(),
    /** Load weights holding NaN or Inf (refused by default: every output would be NaN). */
    allowNonFinite: z.boolean().default(false),
    /** Replace the model another connected client holds under `name`. */
    replace: z.boolean().default(false),
    /** On a bridge of several ranks (`bridge({ nproc })`), shard the model's parameters, gradients
     * and optimizer state across them with FSDP2: full fine-tuning of a model too large for one
     * device. Not with LoRA or `quantize` (those train data-parallel). One rank: no effect. */
    shard: z.boolean().default(false),
    client: z.custom<BridgeClient>((v) => typeof v === "object" && v !== null, "a BridgeClient").optional(),
  })
  .strict();

/** Loads a Hugging Face model directory (config.json + safetensors) into the bridge. */
export async function loadModel(modelDir: string, options: z.input<typeof LoadModelOptions> = {}): Promise<Model> {
  const opts = parseOptions(LoadModelOptions, options, "loadModel");
  const client = opts.client ?? (await bridge());
  const scaling = opts.ropeScaling;
  const info = await client.call("load_model", {
    name: opts.name,
    path: path.resolve(modelDir),
    dtype: opts.dtype,
    rope_scaling: scaling
      ? { type: scaling.type, factor: scaling.factor ?? null, target_length: scaling.targetLength ?? null }
      : null,
    quantize: opts.quantize ?? null,
    allow_non_finite: opts.allowNonFinite,
    replace: opts.replace,
    shard: opts.shard,
  });
  return { name: opts.name, info, client };
}

/** A model the bridge already holds (e.g. loaded before the kernel restarted). */
export async function attachModel(name = "default", client?: BridgeClient): Promise<Model> {
  const c = client ?? (await bridge());
  const status = await c.call("status", {});
  const info = status.models.find((m) => m.name === name);
  if (!info) {
    const known = status.models.map((m) => m.name);
    throw new Error(
      `attachModel: the bridge holds no model named "${name}"${known.length ? ` (it holds: ${known.join(", ")})` : " (it holds none)"}`,
    );
  }
  return { name, info, client: c };
}

export type BridgeStatus = OpResponse<"status">;

/** Device, dtype, memory and the loaded models with their parameter counts. */
export async function status(client?: BridgeClient): Promise<BridgeStatus> {
  return (client ?? (await bridge())).call("status", {});
}
