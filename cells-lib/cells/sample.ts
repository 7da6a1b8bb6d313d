/** Sampling and teacher-forced scoring cells: text in, text and log-probs out. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { Tensor } from "../bridge/frames.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { AbortSignalOption, parseOptions } from "../util/options.ts";
import { interruptible } from "./interrupt.ts";
import type { Model } from "./model.ts";

const SampleOptions = z
  .object({
    /** Samples per prompt. */
    n: z.number().int().min(1).default(1),
    maxNewTokens: z.number().int().min(1).default(128),
    /** 0 means greedy. */
    temperature: z.number().min(0, "must be ≥ 0 (0 means greedy)").default(1),
    topP: z.number().gt(0, "must be in (0, 1]").max(1, "must be in (0, 1]").default(1),
    /** 0 means no limit. */
    topK: z.number().int().min(0).default(0),
    /** Default: the model's stop tokens (`modelStopTokenIds`). */
    stopTokenIds: z.array(z.number().int().nonnegative()).optional(),
    /** Text that ends a completion; the completion's text stops before it. */
    stopStrings: z.array(z.string().min(1)).default([]),
    /** Same seed, same samples. */
    seed: z.number().int().nonnegative().optional(),
    /** Add the tokenizer's special tokens (e.g. BOS) to text prompts. */
    addSpecialTokens: z.boolean().default(true),
    signal: AbortSignalOption.optional(),
    /** Reuse keys/values across steps (false recomputes the prefix; only for comparisons). */
    useCache: z.boolean().default(true),
    /** Also return each token's entropy (`Completion.entropies`; one more pass over the vocabulary a token). */
    entropy: z.boolean().default(false),
  })
  .strict();
export type SampleOptions = z.input<typeof SampleOptions>;

export type StopReason = "stop_token" | "stop_string" | "length";

export interface Completion {
  promptIndex: number;
  sampleIndex: number;
  promptIds: number[];
  tokenIds: number[];
  text: string;
  /** log p(token) under the distribution it was sampled from, one per token in `tokenIds`:
   * log_softmax(logits / temperature), before top-k/top-p; temperature 0 (greedy) gives
   * log_softmax(logits). */
  logprobs: number[];
  /** With option `entropy`: the entropy of the distribution each token was sampled from (the
   * same one as `logprobs`), one per token in `tokenIds`. */
  entropies?: number[];
  stopReason: StopReason;
}

/** A prompt: text (encoded with the tokenizer) or token ids. */
export type Prompt = string | readonly number[];

function encodePrompt(tokenizer: Tokenizer, prompt: Prompt, addSpecialTokens: boolean, index: number): number[] {
  if (typeof prompt !== "string") return [...prompt];
  let ids = tokenizer.encode(prompt, { addSpecialTokens });
  if (ids.length === 0 && tokenizer.bosTokenId !== undefined) ids = [tokenizer.bosTokenId];
  if (ids.length === 0) {
    throw new Error(`sample: prompt ${index} is empty and the tokenizer has no BOS token to start from`);
  }
  return ids;
}

const GENERATION_CONFIG = "generation_config.json";
const tokenId = z.number().int().nonnegative();
const TokenIds = z.union([tokenId, z.array(tokenId)]);

/** The tokens that end a completion of `model`: its directory's generation_config.json
 * `eos_token_id` (one id or a list), which is what transformers' generate() stops at and can
 * list more than config.json's (llama2.c models: BOS too; chat models: the end-of-turn token),
 * else config.json's `eos_token_id`. */
export async function modelStopTokenIds(model: Model): Promise<number[]> {
  const file = path.join(model.info.path, GENERATION_CONFIG);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return model.info.eos_token_ids;
    throw new Error(`sample: cannot read ${file} (${code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`sample: ${file} is not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new Error(`sample: ${file} is not a JSON object`);
  const eos = (json as { eos_token_id?: unknown }).eos_token_id;
  if (eos === undefined || eos === null) return model.info.eos_token_ids;
  const ids = TokenIds.safeParse(eos);
  if (!ids.success)
    throw new Error(
      `sample: ${file}: eos_token_id is ${JSON.stringify(eos)}; expected a token id or a list of token ids`,
    );
  return typeof ids.data === "number" ? [ids.data] : ids.data;
}

/** Decodes completions as continuations of their prompt: tokenizers that mark word starts
 * (SentencePiece's "▁") would otherwise drop the space a completion starts with. */
function continuationDecoder(tokenizer: Tokenizer, promptIds: number[]): (ids: number[]) => string {
  // A model's embedding may have rows past the tokenizer's vocabulary (Qwen2.5 pads 151,665 ids
  // to 151,936): a sampled one is no text, as transformers decodes it.
  const text = (ids: number[]) =>
    tokenizer.decode(
      ids.filter((id) => tokenizer.idToToken(id) !== undefined),
      { skipSpecialTokens: true },
    );
  const prefix = text(promptIds);
  return (ids) => {
    const full = text([...promptIds, ...ids]);
    return full.startsWith(prefix) ? full.slice(prefix.length) : text(ids);
  };
}

/** Cuts a completion at the first stop string: keeps the tokens up to the one that completes
 * it, and the text before it. */
function cutAtStopString(
  decode: (ids: number[]) => string,
  ids: number[],
  stops: string[],
): { ids: number[]; text: string } | undefined {
  const full = decode(ids);
  let at = -1;
  let stop = "";
  for (const s of stops) {
    const i = full.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) [at, stop] = [i, s];
  }
  if (at < 0) return undefined;
  let lo = 1;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (decode(ids.slice(0, mid)).length >= at + stop.length) hi = mid;
    else lo = mid + 1;
  }
  return { ids: ids.slice(0, lo), text: full.slice(0, at) };
}

/** Samples `n` completions for each prompt, in one batch on the bridge. Rows come back
 * prompt-major: all samples of prompt 0, then of prompt 1, ... The `signal` option and the
 * kernel's interrupt cancel the request. */
export async function sample(
  model: Model,
  tokenizer: Tokenizer,
  prompts: Prompt | Prompt[],
  options: SampleOptions = {},
): Promise<Completion[]> {
  const opts = parseOptions(SampleOptions, options, "sample");
  const list =
    typeof prompts === "string" || (prompts.length > 0 && typeof prompts[0] === "number")
      ? [prompts as Prompt]
      : (prompts as Prompt[]);
  if (list.length === 0) throw new Error("sample: no prompts given");
  const encoded = list.map((p, i) => encodePrompt(tokenizer, p, opts.addSpecialTokens, i));
  const body = {
    model: model.name,
    prompt_ids: Tensor.int32(encoded.flat()),
    prompt_lengths: Tensor.int32(encoded.map((e) => e.length)),
    n: opts.n,
    max_new_tokens: opts.maxNewTokens,
    temperature: opts.temperature,
    top_p: opts.topP,
    top_k: opts.topK,
    stop_token_ids: opts.stopTokenIds ?? (await modelStopTokenIds(model)),
    seed: opts.seed ?? null,
    use_cache: opts.useCache,
    entropy: opts.entropy,
  };
  const what = `${opts.n} completion(s) for each of ${encoded.length} prompt(s)`;
  const result = await interruptible(
    {
      cell: "sample",
      signal: opts.signal,
      detail: () =>
        `while sampling ${what}; the bridge stopped it and nothing is returned: run the cell again to sample`,
    },
    (signal) => model.client.call("sample", body, { signal }),
  );
  const decoders = encoded.map((ids) => continuationDecoder(tokenizer, ids));
  return result.stop_reasons.map((reason, row) => {
    const decode = decoders[Math.floor(row / opts.n)]!;
    const length = Number(result.lengths.data[row]);
    let ids = result.tokens.row(row).slice(0, length);
    let logprobs = result.logprobs.row(row).slice(0, length);
    let stopReason: StopReason = reason;
    let text: string | undefined;
    const cut = opts.stopStrings.length ? cutAtStopString(decode, ids, opts.stopStrings) : undefined;
    if (cut) {
      ids = cut.ids;
      logprobs = logprobs.slice(0, ids.length);
      text = cut.text;
      stopReason = "stop_string";
    }
    const entropies = result.entropies?.row(row).slice(0, ids.length);
    return {
      promptIndex: Math.floor(row / opts.n),
      sampleIndex: row % opts.n,
      promptIds: encoded[Math.floor(row / opts.n)]!,
      tokenIds: ids,
      text: text ?? decode(ids),
      logprobs,
      ...(entropies && { entropies }),
      stopReason,
    };
  });
}

const LogprobsOptions = z
  .object({
    /** Scores softmax(logits / temperature): a sampling temperature gives `sample`'s log-probs. */
    temperature: z.number().positive().default(1),
  })
  .strict();
export type LogprobsOptions = z.input<typeof LogprobsOptions>;

/** Teacher-forced log-probs: for each sequence, log p(token t | tokens before t) for every
 * token after the first. */
export async function logprobs(
  model: Model,
  sequences: readonly (readonly number[])[],
  options: LogprobsOptions = {},
): Promise<number[][]> {
  const o = parseOptions(LogprobsOptions, options, "logprobs");
  if (sequences.length === 0) return [];
  sequences.forEach((s, i) => {
    if (s.length < 2)
      throw new Error(`logprobs: sequence ${i} has ${s.length} token(s); at least 2 are needed to score one`);
  });
  const result = await model.client.call("logprobs", {
    model: model.name,
    token_ids: Tensor.int32(sequences.flat()),
    lengths: Tensor.int32(sequences.map((s) => s.length)),
    temperature: o.temperature,
  });
  const out: number[][] = [];
  let offset = 0;
  for (const s of sequences) {
    out.push(Array.from(result.logprobs.data.subarray(offset, offset + s.length - 1) as Float32Array));
    offset += s.length - 1;
  }
  return out;
}
