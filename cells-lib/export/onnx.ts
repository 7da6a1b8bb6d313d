/** Greedy generation from an exported ONNX model with onnxruntime-node, no bridge needed.
 *
 * The exported graph has no KV cache: input_ids [batch, sequence] → logits [batch, sequence,
 * vocab]. Each step re-runs the whole sequence, so a completion of n tokens costs n full
 * forward passes: fine for small models and for checking an export, not a serving path. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { InferenceSession } from "onnxruntime-node";
import { z } from "zod";
import type { Prompt } from "../cells/sample.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { parseOptions } from "../util/options.ts";

type Ort = typeof import("onnxruntime-node");

let ortModule: Promise<Ort> | undefined;

/** onnxruntime-node, imported on first use (its native library loads only when needed). */
function ort(): Promise<Ort> {
  ortModule ??= import("onnxruntime-node").then((m) =>
    (m as { InferenceSession?: unknown }).InferenceSession ? m : (m as unknown as { default: Ort }).default,
  );
  return ortModule;
}

/** An onnxruntime session for an exported model file (reuse it across onnxGenerate calls). */
export async function onnxSession(
  file: string,
  options: InferenceSession.SessionOptions = {},
): Promise<InferenceSession> {
  const { InferenceSession } = await ort();
  return InferenceSession.create(path.resolve(file), options);
}

const OnnxGenerateOptions = z
  .object({
    maxNewTokens: z.number().int().min(1).default(128),
    /** Default: config.json's eos_token_id next to the file (or one directory up, for an
     * export's onnx/model.onnx), else the tokenizer's EOS. */
    stopTokenIds: z.array(z.number().int().nonnegative()).optional(),
    /** Add the tokenizer's special tokens (e.g. BOS) to a text prompt. */
    addSpecialTokens: z.boolean().default(true),
    /** Longest sequence (prompt + completion) to run; default: config.json's
     * max_position_embeddings when found (the graph's RoPE table ends there). */
    maxLength: z.number().int().min(1).optional(),
  })
  .strict();
export type OnnxGenerateOptions = z.input<typeof OnnxGenerateOptions>;

export interface OnnxCompletion {
  promptIds: number[];
  /** The generated ids; a stop token, when reached, is the last one (as `sample` keeps it). */
  tokenIds: number[];
  text: string;
  /** log p(token) at temperature 1, one per token in `tokenIds`. */
  logprobs: number[];
  stopReason: "stop_token" | "length";
}

async function modelConfigNear(file: string): Promise<Record<string, unknown> | undefined> {
  for (const dir of [path.dirname(file), path.dirname(path.dirname(file))]) {
    try {
      return JSON.parse(await readFile(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    } catch {
      // not here
    }
  }
  return undefined;
}

function encode(tokenizer: Tokenizer, prompt: Prompt, addSpecialTokens: boolean): number[] {
  if (typeof prompt !== "string") return [...prompt];
  let ids = tokenizer.encode(prompt, { addSpecialTokens });
  if (ids.length === 0 && tokenizer.bosTokenId !== undefined) ids = [tokenizer.bosTokenId];
  if (ids.length === 0)
    throw new Error("onnxGenerate: the prompt is empty and the tokenizer has no BOS token to start from");
  return ids;
}

/** Index of the largest value (the first on ties, as torch.argmax) and its log-softmax. */
function greedy(logits: Float32Array, offset: number, vocab: number): [number, number] {
  let best = offset;
  for (let i = offset + 1; i < offset + vocab; i++) if (logits[i]! > logits[best]!) best = i;
  const max = logits[best]!;
  let sum = 0;
  for (let i = offset; i < offset + vocab; i++) sum += Math.exp(logits[i]! - max);
  return [best - offset, -Math.log(sum)];
}

/**
 * Greedy decoding (temperature 0) with an exported ONNX model: the same tokens as the bridge's
 * `sample(model, tokenizer, prompt, { temperature: 0 })` on the model it was exported from.
 * `onnx` is a model file (e.g. `<export>/onnx/model.onnx`) or a session from `onnxSession`.
 */
export async function onnxGenerate(
  onnx: string | InferenceSession,
  tokenizer: Tokenizer,
  prompt: Prompt,
  options: OnnxGenerateOptions = {},
): Promise<OnnxCompletion> {
  const o = parseOptions(OnnxGenerateOptions, options, "onnxGenerate");
  const { Tensor } = await ort();
  const config = typeof onnx === "string" ? await modelConfigNear(path.resolve(onnx)) : undefined;
  const session = typeof onnx === "string" ? await onnxSession(onnx) : onnx;
  try {
    const eos = config?.eos_token_id;
    const stop = new Set(
      o.stopTokenIds ??
        (typeof eos === "number"
          ? [eos]
          : Array.isArray(eos)
            ? (eos as number[])
            : tokenizer.eosTokenId !== undefined
              ? [tokenizer.eosTokenId]
              : []),
    );
    const maxLength =
      o.maxLength ?? (typeof config?.max_position_embeddings === "number" ? config.max_position_embeddings : undefined);
    const promptIds = encode(tokenizer, prompt, o.addSpecialTokens);
    if (maxLength !== undefined && promptIds.length + o.maxNewTokens > maxLength) {
      throw new Error(
        `onnxGenerate: prompt (${promptIds.length} tokens) + maxNewTokens (${o.maxNewTokens}) exceeds the model's context of ${maxLength}`,
      );
    }
    const [input] = session.inputNames;
    const [output] = session.outputNames;
    if (!input || !output) throw new Error("onnxGenerate: the ONNX model has no input or no output");
    const ids = [...promptIds];
    const tokenIds: number[] = [];
    const logprobs: number[] = [];
    let stopReason: OnnxCompletion["stopReason"] = "length";
    for (let step = 0; step < o.maxNewTokens; step++) {
      const feed = new Tensor(
        "int64",
        BigInt64Array.from(ids, (v) => BigInt(v)),
        [1, ids.length],
      );
      const result = await session.run({ [input]: feed });
      const logits = result[output]!;
      const vocab = logits.dims[2]!;
      const [token, logprob] = greedy(logits.data as Float32Array, (ids.length - 1) * vocab, vocab);
      logits.dispose?.();
      ids.push(token);
      tokenIds.push(token);
      logprobs.push(logprob);
      if (stop.has(token)) {
        stopReason = "stop_token";
        break;
      }
    }
    // Decoded as a continuation of the prompt, as `sample` does (keeps a leading "▁" space).
    const prefix = tokenizer.decode(promptIds, { skipSpecialTokens: true });
    const full = tokenizer.decode([...promptIds, ...tokenIds], { skipSpecialTokens: true });
    const text = full.startsWith(prefix)
      ? full.slice(prefix.length)
      : tokenizer.decode(tokenIds, { skipSpecialTokens: true });
    return { promptIds, tokenIds, text, logprobs, stopReason };
  } finally {
    if (typeof onnx === "string") await session.release();
  }
}
