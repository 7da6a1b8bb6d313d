/** exportModel: a trained model (LoRA merged in) as a standalone Hugging Face directory, with
 * tokenizer files, a model card and optionally ONNX, written all-or-nothing; or, with
 * `adapterOnly`, its LoRA adapter alone in PEFT's format, with the same tokenizer files and card. */
import { copyFile, mkdir, open, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { MODEL_DTYPES, ONNX_OPSETS } from "../bridge/protocol.ts";
import type { Model } from "../cells/model.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { escapeRegExp, removeStaleStaging, stagingSuffix, withPath } from "../util/atomic.ts";
import { AbortSignalOption, OptionsError, parseOptions } from "../util/options.ts";
import { ModelCardInfo, renderModelCard } from "./model-card.ts";

/** The files of a Hugging Face tokenizer directory an export carries along. */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "tokenizer.model",
  "chat_template.jinja",
  "chat_template.json",
] as const;

/** Hugging Face's default max_shard_size ("5GB"). */
export const DEFAULT_SHARD_BYTES = 5_000_000_000;

const ExportOptions = z
  .object({
    /** The model card's training metadata (base model, data, algorithm, steps, final metrics). */
    card: ModelCardInfo.default({ tags: [] }),
    /** Also write onnx/model.onnx (fp32, input_ids → logits; see onnxGenerate). */
    onnx: z.boolean().default(false),
    opset: z.number().int().min(ONNX_OPSETS.min).max(ONNX_OPSETS.max).default(ONNX_OPSETS.default),
    /** Weights above this many bytes are split into shards; null: always one file. */
    shardBytes: z.number().int().positive().nullable().default(DEFAULT_SHARD_BYTES),
    /** "auto": the dtype the bridge holds the model in. */
    dtype: z.enum(MODEL_DTYPES).default("auto"),
    /** Where the tokenizer files come from (default: the tokenizer's own directory, else the
     * directory the model was loaded from). */
    tokenizerDir: z.string().min(1).optional(),
    /** Write the LoRA adapter alone, in PEFT's format (adapter_config.json +
     * adapter_model.safetensors, loadable with peft's PeftModel.from_pretrained onto the base
     * model), instead of merged weights. The model must have LoRA adapters. Not with `onnx`
     * or a `dtype` other than "auto" (the adapter is written as the bridge holds it). */
    adapterOnly: z.boolean().default(false),
    signal: AbortSignalOption.optional(),
  })
  .strict();
export type ExportOptions = z.input<typeof ExportOptions>;

export interface ExportResult {
  dir: string;
  /** "merged": a standalone model; "peft-adapter": the LoRA adapter alone (adapterOnly). */
  format: "merged" | "peft-adapter";
  /** Relative paths, sorted. */
  files: string[];
  dtype: string;
  weightBytes: number;
  /** The merged (or, adapterOnly, written) adapters' settings, or null. */
  lora: Record<string, unknown> | null;
  onnx: { path: string; opset: number; bytes: number } | null;
  /** The README.md written. */
  card: string;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** The first candidate directory holding a tokenizer (tokenizer.json, or vocab.json + merges.txt). */
async function tokenizerSource(tokenizer: Tokenizer, model: Model, explicit: string | undefined): Promise<string> {
  const candidates: string[] = [];
  if (explicit) candidates.push(path.resolve(explicit));
  const source = path.resolve(tokenizer.source);
  const s = await stat(source).catch(() => undefined);
  if (s) candidates.push(s.isDirectory() ? source : path.dirname(source));
  candidates.push(model.info.path);
  for (const dir of candidates) {
    if (await exists(path.join(dir, "tokenizer.json"))) return dir;
    if ((await exists(path.join(dir, "vocab.json"))) && (await exists(path.join(dir, "merges.txt")))) return dir;
    if (dir === candidates[0] && explicit)
      throw new Error(`exportModel: tokenizerDir ${dir} has no tokenizer.json (nor vocab.json + merges.txt)`);
  }
  throw new Error(
    `exportModel: found no tokenizer files (tokenizer.json, or vocab.json + merges.txt) in ${[...new Set(candidates)].join(", ")}; ` +
      `pass tokenizerDir`,
  );
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function listRelative(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    if ((await stat(path.join(dir, r))).isDirectory()) out.push(...(await listRelative(dir, r)));
    else out.push(r);
  }
  return out;
}

/** Throws unless `dir` is absent, empty, or a model or adapter directory (has config.json or
 * adapter_config.json): an export replaces an earlier export, never unrelated files. Returns
 * whether it exists. */
export async function checkReplaceable(dir: string, where: string): Promise<boolean> {
  const s = await stat(dir).catch(() => undefined);
  if (!s) return false;
  if (!s.isDirectory()) throw new Error(`${where}: ${dir} exists and is not a directory`);
  if (
    (await readdir(dir)).length &&
    !(await exists(path.join(dir, "config.json"))) &&
    !(await exists(path.join(dir, "adapter_config.json")))
  ) {
    throw new Error(
      `${where}: ${dir} is a non-empty directory that is not a model directory (no config.json, nor adapter_config.json); refusing to replace it`,
    );
  }
  return true;
}

interface Written {
  dtype: string;
  parameters: number;
  weightBytes: number;
  lora: Record<string, unknown> | null;
  onnx: { path: string; opset: number; bytes: number } | null;
}

/**
 * Writes `outDir` as a standalone Hugging Face model: the bridge merges the LoRA adapters into
 * copies of the base weights (the live model keeps training), drops the value head,
 * dequantizes a quantized base, and writes config.json, model.safetensors (or shards +
 * index above `shardBytes`), generation_config.json and, with `onnx: true`, onnx/model.onnx;
 * this cell adds the tokenizer files and a README.md model card. Everything is staged in a
 * temporary sibling directory and renamed into place, so a failed export leaves nothing
 * half-written (and an earlier export at `outDir` is replaced only on success). What a killed
 * export left beside `outDir` is removed first.
 *
 * With `adapterOnly: true` the bridge writes the LoRA adapter in PEFT's format instead of
 * merged weights (adapter_config.json, whose base_model_name_or_path is `card.baseModel` or the
 * model's path, and adapter_model.safetensors); tokenizer files and card as above.
 */
export async function exportModel(
  model: Model,
  tokenizer: Tokenizer,
  outDir: string,
  options: ExportOptions = {},
): Promise<ExportResult> {
  const o = parseOptions(ExportOptions, options, "exportModel");
  if (o.adapterOnly && o.onnx)
    throw new OptionsError(
      `exportModel: options "adapterOnly" and "onnx" exclude each other: ONNX holds a whole model, not an adapter`,
    );
  if (o.adapterOnly && o.dtype !== "auto") {
    throw new OptionsError(
      `exportModel: option "dtype": "${o.dtype}" is not available with adapterOnly ` +
        `(the adapter is written in the dtype the bridge holds it in); leave it "auto"`,
    );
  }
  const target = path.resolve(outDir);
  await checkReplaceable(target, "exportModel");
  const tokDir = await tokenizerSource(tokenizer, model, o.tokenizerDir);
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  const base = escapeRegExp(path.basename(target));
  await removeStaleStaging(parent, [
    // An export's staging, and the earlier export it moved aside: the exporting process's pid.
    new RegExp(`^\\.${base}\\.(?:export|old)-(\\d+)-[0-9a-f]+$`),
    // The bridge's own staging for that staging directory (export.py's write_export): its pid.
    new RegExp(`^\\.\\.${base}\\.export-\\d+-[0-9a-f]+\\.tmp-(\\d+)-[0-9a-f]+$`),
  ]);
  const suffix = stagingSuffix();
  const staging = path.join(parent, `.${path.basename(target)}.export-${suffix}`);
  const old = path.join(parent, `.${path.basename(target)}.old-${suffix}`);
  try {
    let r: Written;
    if (o.adapterOnly) {
      const a = await model.client.call(
        "save_adapter",
        { model: model.name, dir: staging, base_model_name_or_path: o.card.baseModel ?? null },
        { signal: o.signal },
      );
      r = { dtype: a.dtype, parameters: a.parameters, weightBytes: a.weight_bytes, lora: a.settings, onnx: null };
    } else {
      const e = await model.client.call(
        "export_model",
        {
          model: model.name,
          dir: staging,
          shard_bytes: o.shardBytes,
          dtype: o.dtype,
          metadata: { exported_by: "thinkcells" },
          onnx: o.onnx ? { opset: o.opset } : null,
        },
        { signal: o.signal },
      );
      r = { dtype: e.dtype, parameters: e.parameters, weightBytes: e.weight_bytes, lora: e.lora, onnx: e.onnx };
    }
    for (const file of TOKENIZER_FILES) {
      const from = path.join(tokDir, file);
      if (await exists(from)) {
        await copyFile(from, path.join(staging, file));
        await fsyncPath(path.join(staging, file));
      }
    }
    const files = [...new Set([...(await listRelative(staging)), "README.md"])].sort();
    const card = renderModelCard(
      { ...o.card, baseModel: o.card.baseModel ?? model.info.path },
      {
        title: path.basename(target),
        dtype: r.dtype,
        files,
        weightBytes: r.weightBytes,
        lora: r.lora,
        adapter: o.adapterOnly,
        onnx: r.onnx ? { file: "onnx/model.onnx", opset: r.onnx.opset } : null,
        quantization: model.info.quantization,
        parameters: r.parameters,
        contextLength: model.info.max_position_embeddings,
        exportedAt: new Date(),
      },
    );
    await writeFile(path.join(staging, "README.md"), card).catch((err) => {
      throw withPath(err, path.join(staging, "README.md"));
    });
    await fsyncPath(path.join(staging, "README.md"));
    await fsyncPath(staging);
    // The commit: move an earlier export aside, rename the staged one in, delete the old one.
    const replacing = await checkReplaceable(target, "exportModel");
    if (replacing) await rename(target, old);
    try {
      await rename(staging, target);
    } catch (err) {
      if (replacing) await rename(old, target).catch(() => {});
      throw err;
    }
    await fsyncPath(parent);
    await rm(old, { recursive: true, force: true });
    return {
      dir: target,
      format: o.adapterOnly ? "peft-adapter" : "merged",
      files,
      dtype: r.dtype,
      weightBytes: r.weightBytes,
      lora: r.lora,
      onnx: r.onnx ? { path: path.join(target, "onnx", "model.onnx"), opset: r.onnx.opset, bytes: r.onnx.bytes } : null,
      card,
    };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
