/** LoRA adapters in PEFT's format (adapter_config.json + adapter_model.safetensors): what
 * `PeftModel.from_pretrained(model, dir)` loads onto the transformers model, and what a
 * `PeftModel.save_pretrained` wrote, loaded onto a bridge model. */
import path from "node:path";
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import type { Model } from "./model.ts";

const SaveAdapterOptions = z
  .object({
    /** adapter_config.json's base_model_name_or_path, e.g. a Hub id ("HuggingFaceTB/SmolLM2-135M");
     * default: the directory the model was loaded from. */
    baseModel: z.string().min(1).optional(),
  })
  .strict();
export type SaveAdapterOptions = z.input<typeof SaveAdapterOptions>;

export interface SaveAdapterResult {
  dir: string;
  /** adapter_config.json and adapter_model.safetensors. */
  files: string[];
  /** The adapters' settings: rank, alpha, dropout, targets, ... */
  settings: Record<string, unknown>;
  /** The adapter tensors' dtype (as the bridge holds them), count and bytes. */
  dtype: string;
  parameters: number;
  weightBytes: number;
}

/** Writes the model's LoRA adapters to `dir` in PEFT's format, atomically (an earlier adapter
 * there is replaced; any other non-empty directory is refused). Training state (optimizer
 * moments, step) is not in it: that is `saveState`'s. */
export async function saveAdapter(
  model: Model,
  dir: string,
  options: SaveAdapterOptions = {},
): Promise<SaveAdapterResult> {
  const o = parseOptions(SaveAdapterOptions, options, "saveAdapter");
  const r = await model.client.call("save_adapter", {
    model: model.name,
    dir: path.resolve(dir),
    base_model_name_or_path: o.baseModel ?? null,
  });
  return {
    dir: r.dir,
    files: r.files,
    settings: r.settings,
    dtype: r.dtype,
    parameters: r.parameters,
    weightBytes: r.weight_bytes,
  };
}

/** Applies the PEFT LoRA adapter in `dir` (replacing the model's adapters, if any) with fresh
 * optimizer state, ready to sample or train on. Supports LoRA and rsLoRA on the decoder
 * layers' projections; DoRA, adapters on lm_head or the embeddings, per-module ranks, biases
 * and modules_to_save are refused, naming the field. */
export async function loadAdapter(model: Model, dir: string): Promise<Model> {
  const info = await model.client.call("load_adapter", { model: model.name, dir: path.resolve(dir) });
  return { ...model, info };
}
