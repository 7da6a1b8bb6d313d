/**
 * The bridge protocol, declared once. These zod schemas are the source of truth: the Python
 * worker validates every request against the JSON Schema generated from them
 * (gpu-bridge/thinkcells_bridge/protocol.schema.json, `npm run gen:protocol`), and the client
 * validates every response.
 *
 * Wire format (both directions), one frame per message:
 *   u32 LE  frame length (bytes after this field)
 *   u32 LE  JSON length
 *   JSON    envelope (UTF-8)
 *   bytes   binary section: typed arrays, each 8-byte aligned
 * A typed array travels as a TensorRef `{ $tensor: i, dtype, shape }` in the JSON, and the
 * envelope's `buffers[i] = [offset, byteLength]` locates its bytes in the binary section.
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 6;

/** The bridge process's exit codes that the client acts on while starting one. */
export const EXIT_CODES = {
  /** Another bridge already serves the session: attach to it. */
  already_running: 3,
  /** This Python cannot run the bridge (torch too old, packages missing): the log says why. */
  unfit_environment: 4,
} as const;

const dtypes = ["int32", "int64", "float32"] as const;
export type WireDtype = (typeof dtypes)[number];

export const TensorRef = z
  .object({
    $tensor: z.number().int().nonnegative(),
    dtype: z.enum(dtypes),
    shape: z.array(z.number().int().nonnegative()),
  })
  .strict()
  .meta({ id: "TensorRef" });
export type TensorRef = z.infer<typeof TensorRef>;

/** ONNX opsets the export writes: torch.export's ONNX exporter builds opset 18 and converts up. */
export const ONNX_OPSETS = { min: 18, max: 23, default: 18 } as const;
const opset = z.number().int().min(ONNX_OPSETS.min).max(ONNX_OPSETS.max);

/** Dtypes a model is loaded or exported in; "auto": the device's default (bf16 on CUDA, else fp32). */
export const MODEL_DTYPES = ["auto", "float32", "bfloat16", "float16"] as const;

const name = z.string().min(1).max(128);
const int = z.number().int();

/** The session file a bridge publishes in its runtime directory (`<session>.json`, 0600): how a
 * client finds and authenticates to it. Read by the client, written by the worker's server.py. */
export const SessionFile = z.object({
  pid: int.positive(),
  socket: z.string().min(1),
  token: z.string().min(1),
  protocol_version: int,
  started_at: z.number(),
  /** A bridge of several ranks: the process a client started (torchrun's agent), which took the
   * session's lock and outlives rank 0 (`pid`, which serves the socket). */
  launcher_pid: int.positive().optional(),
});
export type SessionFile = z.infer<typeof SessionFile>;

/** Which code runs a model: thinkcells' own PyTorch modules, or transformers' for other architectures. */
export const MODEL_BACKENDS = ["native", "transformers"] as const;

const ModelInfo = z.object({
  name,
  path: z.string(),
  model_type: z.string(),
  backend: z.enum(MODEL_BACKENDS),
  /** The decoder layers' projection names LoRA targets may list ("all-linear" takes them all). */
  lora_targets: z.array(z.string()),
  device: z.string(),
  dtype: z.string(),
  vocab_size: int,
  hidden_size: int,
  num_hidden_layers: int,
  num_attention_heads: int,
  num_key_value_heads: int,
  max_position_embeddings: int,
  /** The RoPE scaling in effect (from config.json or set at load), or null. */
  rope_scaling: z.record(z.string(), z.unknown()).nullable(),
  /** Weight-only quantization of the frozen base linears, or null. */
  quantization: z.enum(["int8", "nf4"]).nullable(),
  /** The LoRA adapters' settings (rank, alpha, dropout, targets, seed), or null: no adapters. */
  lora: z.record(z.string(), z.unknown()).nullable(),
  /** Whether PPO's value head is attached. */
  value_head: z.boolean(),
  /** Its parameters, gradients and optimizer state are sharded across the bridge's ranks (FSDP2). */
  sharded: z.boolean(),
  /** Bytes of parameters and buffers as held (quantized weights count at their stored size). */
  weight_bytes: int,
  tie_word_embeddings: z.boolean(),
  bos_token_id: int.nullable(),
  eos_token_ids: z.array(int),
  parameters: int,
  trainable_parameters: int,
});
export type ModelInfo = z.infer<typeof ModelInfo>;

/** LoRA targets: "all-linear", or projection names the model lists in ModelInfo.lora_targets
 * (Llama-family names for the native models; the worker checks them against the model). */
export const LoraTargets = z.union([
  z.literal("all-linear"),
  z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/)).min(1),
]);

/** How the policy-gradient loss reduces its token terms (docs/algorithms.md): GRPO's, DAPO's, Dr.GRPO's. */
export const AGGREGATIONS = ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"] as const;

const policyGradient = {
  mask: TensorRef,
  old_logprobs: TensorRef,
  /** One per sequence ([B]) or one per token (aligned with token_ids). */
  advantages: TensorRef,
  eps_low: z.number().min(0),
  eps_high: z.number().min(0),
  ratio_level: z.enum(["token", "sequence"]),
  aggregation: z.enum(AGGREGATIONS),
  constant: z.number().positive().nullable(),
  num_tokens: z.number().positive().nullable(),
  num_sequences: z.number().positive().nullable(),
  /** k3 KL to the adapter-disabled model; 0 skips the reference pass. */
  beta: z.number().min(0),
  entropy_coef: z.number().min(0),
  /** The sampling temperature: the policy, the reference and the entropy are those of
   * softmax(logits / temperature), the distribution `sample` drew from (as TRL does). */
  temperature: z.number().positive(),
};

/** What forward_backward minimizes. Per-token arrays are float32, aligned with `token_ids`:
 * the value at token t belongs to predicting t (a sequence's first token has none). */
const TrainingLoss = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("cross_entropy"),
      /** Per-token weights: 0 on prompt tokens for completion-only SFT. */
      weights: TensorRef,
      /** The whole batch's Σ weights when a batch is split into micro-batches. */
      num_tokens: z.number().positive().nullable(),
    })
    .strict(),
  z.object({ kind: z.literal("policy_gradient"), ...policyGradient }).strict(),
  z
    .object({
      kind: z.literal("ppo"),
      ...policyGradient,
      /** The value head's V when the tokens were sampled, and the GAE returns, per token. */
      old_values: TensorRef,
      returns: TensorRef,
      value_clip: z.number().positive(),
      value_coef: z.number().min(0),
    })
    .strict(),
  z
    .object({
      kind: z.literal("dpo"),
      /** Sequences come in (chosen, rejected) pairs; the mask marks completion tokens. */
      mask: TensorRef,
      beta: z.number().positive(),
      /** The reference's sequence log-probs (Σ over the mask), one per sequence ([B]); null:
       * the model with its adapters off, computed in the same call. */
      ref_logprobs: TensorRef.nullable(),
    })
    .strict(),
]);

/** A batch and the loss to compute on it: what forward_backward and forward take. */
const lossBatch = {
  model: name,
  token_ids: TensorRef,
  lengths: TensorRef,
  /** Packed rows (int32): the lengths of the examples packed into them, in token order,
   * tiling each row. Each example attends only to itself, with positions from 0, and its
   * first token is not predicted (as a sequence's); cross_entropy only. null: one example
   * per row. */
  example_lengths: TensorRef.nullable(),
  loss: TrainingLoss,
};
/** null loss: not finite (forward_backward then skips the step it belongs to). */
const LossResult = z.object({
  loss: z.number().nullable(),
  metrics: z.record(z.string(), z.number().nullable()),
  tokens: int,
});

/** Every operation: its request body and its response body. */
export const ops = {
  hello: {
    request: z.object({ token: z.string(), protocol_version: int, client: z.string() }).strict(),
    response: z.object({
      protocol_version: int,
      bridge_version: z.string(),
      session: z.string(),
      pid: int,
      device: z.string(),
      torch_version: z.string(),
    }),
  },
  ping: { request: z.object({}).strict(), response: z.object({}) },
  status: {
    request: z.object({}).strict(),
    response: z.object({
      device: z.string(),
      default_dtype: z.string(),
      torch_version: z.string(),
      threads: int,
      /** torch's own BLAS, as its build reports it (e.g. "mkl", "open"). */
      torch_blas: z.string(),
      /** The BLAS the native CPU decode step calls; null: the step is unavailable (no C
       * compiler, no optimised BLAS, or THINKCELLS_NATIVE=0), sampling runs plain torch. */
      native_blas: z.string().nullable(),
      memory: z.object({
        rss_bytes: int,
        cuda_allocated_bytes: int.nullable(),
        cuda_reserved_bytes: int.nullable(),
        cuda_total_bytes: int.nullable(),
      }),
      models: z.array(ModelInfo),
      /** Prompt token positions the `sample` calls' prefills have run since the bridge started
       * (as each response's `prefill_tokens`). */
      prefill_tokens: int,
      uptime_s: z.number(),
      /** Ranks running the operations (torchrun; 1: one process); the figures above are rank 0's. */
      world_size: int,
    }),
  },
  load_model: {
    request: z
      .object({
        name,
        path: z.string().min(1),
        dtype: z.enum(MODEL_DTYPES),
        /** Context extension beyond config.json's; factor defaults to target / max positions. */
        rope_scaling: z
          .object({
            type: z.enum(["linear", "dynamic", "yarn", "llama3"]),
            factor: z.number().min(1).nullable(),
            target_length: int.positive().nullable(),
          })
          .strict()
          .nullable(),
        /** Store the decoder's linear weights quantized (QLoRA-style: train LoRA on top). */
        quantize: z.enum(["int8", "nf4"]).nullable(),
        /** Load weights holding NaN or Inf; otherwise refused, naming the file and tensor. */
        allow_non_finite: z.boolean(),
        /** Load over a model another connected client loaded under this name; otherwise refused,
         * naming that client. A client may always reload its own, or a gone client's. */
        replace: z.boolean(),
        /** On a bridge of several ranks, shard the parameters, gradients and optimizer state across
         * them (FSDP2: full fine-tuning of a model too large for one device; no LoRA, no quantize);
         * absent or false: every rank holds the whole model (data parallel). One rank: no effect. */
        shard: z.boolean().optional(),
      })
      .strict(),
    response: ModelInfo,
  },
  unload_model: {
    request: z.object({ name }).strict(),
    response: z.object({ unloaded: z.boolean() }),
  },
  save_model: {
    request: z.object({ name, out_dir: z.string().min(1), max_shard_bytes: int.positive().nullable() }).strict(),
    response: z.object({ files: z.array(z.string()) }),
  },
  /** A standalone Hugging Face directory from the live model: LoRA merged into copies of the
   * base weights (the live model is untouched), value head dropped, a quantized base
   * dequantized; config.json, safetensors, generation_config.json and optionally
   * onnx/model.onnx, written under a temporary name and renamed into place. */
  export_model: {
    request: z
      .object({
        model: name,
        /** Created or replaced (only an empty or model directory is replaced). */
        dir: z.string().min(1),
        /** Weights above this many bytes go to model-0000i-of-0000N.safetensors shards plus
         * model.safetensors.index.json; null: always one model.safetensors. */
        shard_bytes: int.positive().nullable(),
        /** "auto": the dtype the model is held in. */
        dtype: z.enum(MODEL_DTYPES),
        /** Extra strings for the safetensors header's __metadata__ (format: pt is always set). */
        metadata: z.record(z.string(), z.string()),
        /** Also write onnx/model.onnx (fp32; input_ids → logits, no KV cache); null: no ONNX. */
        onnx: z.object({ opset }).strict().nullable(),
      })
      .strict(),
    response: z.object({
      dir: z.string(),
      /** Relative paths, sorted. */
      files: z.array(z.string()),
      dtype: z.string(),
      /** Parameters in the exported weights (adapters merged, no value head). */
      parameters: int,
      weight_bytes: int,
      /** The merged adapters' settings (rank, alpha, targets, ...) and how many modules were
       * merged; null when the model had none. */
      lora: z.record(z.string(), z.unknown()).nullable(),
      onnx: z
        .object({
          path: z.string(),
          opset: int,
          bytes: int,
          /** Traced module vs the bridge's forward on the example input (logits). */
          max_abs_diff: z.number(),
        })
        .nullable(),
    }),
  },
  /** The merged model's forward alone as an ONNX file (fp32): input_ids [batch, sequence]
   * int64 → logits [batch, sequence, vocab], dynamic batch and sequence, no KV cache. */
  export_onnx: {
    request: z.object({ model: name, path: z.string().min(1), opset }).strict(),
    response: z.object({ path: z.string(), opset: int, bytes: int, max_abs_diff: z.number() }),
  },
  convert_llama2c: {
    request: z.object({ bin_path: z.string().min(1), out_dir: z.string().min(1) }).strict(),
    response: z.object({ config: z.record(z.string(), z.unknown()), files: z.array(z.string()) }),
  },
  sample: {
    request: z
      .object({
        model: name,
        /** All prompts' token ids, concatenated; `prompt_lengths` splits them. */
        prompt_ids: TensorRef,
        prompt_lengths: TensorRef,
        n: int.min(1),
        max_new_tokens: int.min(1),
        temperature: z.number().min(0),
        top_p: z.number().gt(0).max(1),
        top_k: int.min(0),
        stop_token_ids: z.array(int.nonnegative()),
        seed: int.nullable(),
        /** false recomputes the whole prefix every step (for benchmarks and checks). */
        use_cache: z.boolean(),
        /** Also return each token's entropy (one more pass over the vocabulary a step). */
        entropy: z.boolean(),
      })
      .strict(),
    /** Rows are prompt-major: row r is sample r % n of prompt floor(r / n). */
    response: z.object({
      tokens: TensorRef, // int32 [rows, max_new_tokens], zero past each row's length
      lengths: TensorRef, // int32 [rows]
      /** float32 [rows, max_new_tokens], zero past each row's length: each token's log-prob under
       * the distribution it was sampled from, log_softmax(logits / temperature), taken before
       * top-k/top-p (so not renormalised over the tokens they keep: as TRL scores the policy);
       * with temperature 0 (greedy), log_softmax(logits). */
      logprobs: TensorRef,
      stop_reasons: z.array(z.enum(["stop_token", "length"])),
      /** Token positions the prompt prefill ran, left padding included: with a cache, each
       * prompt once, its n samples sharing it (P prompts of length L: P·L, not P·n·L). */
      prefill_tokens: int,
      /** float32 [rows, max_new_tokens] when asked (`entropy`), zero past each row's length: the
       * entropy of the distribution each token was sampled from (as `logprobs`: temperature,
       * before top-k/top-p); null otherwise. */
      entropies: TensorRef.nullable(),
    }),
  },
  logprobs: {
    request: z
      .object({
        model: name,
        /** Sequences concatenated; `lengths` splits them. */
        token_ids: TensorRef,
        lengths: TensorRef,
        /** Of softmax(logits / temperature): 1 for the model's own distribution. */
        temperature: z.number().positive(),
      })
      .strict(),
    /** Per sequence, log p(token t | tokens < t) for t = 1..len-1, concatenated. */
    response: z.object({ logprobs: TensorRef }),
  },
  apply_lora: {
    request: z
      .object({
        model: name,
        rank: int.min(1),
        alpha: z.number().positive(),
        dropout: z.number().min(0).lt(1),
        targets: LoraTargets,
        /** Fixes the adapters' random initialisation. */
        seed: int.nonnegative(),
      })
      .strict(),
    response: ModelInfo,
  },
  /** The model's LoRA adapters in PEFT's format: adapter_config.json and
   * adapter_model.safetensors (base_model.model.<module>.lora_A/lora_B.weight), written under
   * a temporary name and renamed into place (only an empty or adapter directory is replaced). */
  save_adapter: {
    request: z
      .object({
        model: name,
        dir: z.string().min(1),
        /** adapter_config.json's base_model_name_or_path; null: the path the model was loaded from. */
        base_model_name_or_path: z.string().min(1).nullable(),
      })
      .strict(),
    response: z.object({
      dir: z.string(),
      files: z.array(z.string()),
      /** The adapters' settings (rank, alpha, dropout, targets, ...), as training state records them. */
      settings: z.record(z.string(), z.unknown()),
      /** The adapter tensors' dtype (as held), parameter count and bytes. */
      dtype: z.string(),
      parameters: int,
      weight_bytes: int,
    }),
  },
  /** Applies a PEFT LoRA adapter directory (replacing any adapters), with new optimizer state
   * as apply_lora; refuses, naming the field, what thinkcells cannot apply (DoRA, lm_head or
   * embedding targets, per-module ranks, biases, modules_to_save, some layers only). */
  load_adapter: {
    request: z.object({ model: name, dir: z.string().min(1) }).strict(),
    response: ModelInfo,
  },
  /** Drops the adapters: every parameter trainable again (full fine-tuning). */
  remove_lora: { request: z.object({ model: name }).strict(), response: ModelInfo },
  /** Attaches a trainable value head (PPO's critic), zero-initialised. */
  add_value_head: { request: z.object({ model: name }).strict(), response: ModelInfo },
  /** The value head's V at each predicted position: per sequence, t = 1..len-1, concatenated. */
  values: {
    request: z.object({ model: name, token_ids: TensorRef, lengths: TensorRef }).strict(),
    response: z.object({ values: TensorRef }),
  },
  set_adapters: {
    request: z.object({ model: name, enabled: z.boolean() }).strict(),
    response: z.object({ enabled: z.boolean() }),
  },
  /** Accumulates gradients. From a client's first forward_backward until its optim_step (or
   * reset_optimizer, or its disconnection) the model is mid-cycle for that client: another
   * client's forward_backward, optim_step or reset_optimizer is refused (bad_input, naming it). */
  forward_backward: {
    request: z
      .object({
        ...lossBatch,
        /** Multiplies the loss before backward (e.g. 1 / micro-batches). */
        loss_scale: z.number().positive(),
        /** Recompute each layer in backward instead of keeping its activations. */
        gradient_checkpointing: z.boolean(),
      })
      .strict(),
    response: LossResult,
  },
  /** The loss and metrics forward_backward would report, with no gradients and no dropout:
   * evaluation (e.g. DPO's validation pairs). It never touches a training cycle. */
  forward: { request: z.object(lossBatch).strict(), response: LossResult },
  /** Forgets the optimizer's moments and step count (a new training phase, e.g. RL after SFT);
   * the weights and the model's random stream stay. */
  reset_optimizer: { request: z.object({ model: name }).strict(), response: z.object({ step: int }) },
  /** Forgets the gradients accumulated since the last optim_step, ending this client's cycle
   * (a loop stopped between micro-batches); weights and optimizer state stay. */
  discard_gradients: { request: z.object({ model: name }).strict(), response: z.object({ discarded: z.boolean() }) },
  /** Applies and clears the accumulated gradients. Skipped (`skipped`, `reason`; weights and
   * optimizer state as before) when a micro-batch's loss or the gradient norm was not finite, or
   * when the update would leave a weight non-finite; `grad_norm` is null when no micro-batch had
   * a finite loss. */
  optim_step: {
    request: z
      .object({
        model: name,
        lr: z.number().nonnegative(),
        beta1: z.number().min(0).lt(1),
        beta2: z.number().min(0).lt(1),
        eps: z.number().positive(),
        weight_decay: z.number().min(0),
        /** null: no clipping. */
        max_grad_norm: z.number().positive().nullable(),
      })
      .strict(),
    response: z.object({
      grad_norm: z.number().nullable(),
      skipped: z.boolean(),
      reason: z.string().nullable(),
      step: int,
    }),
  },
  save_state: {
    request: z.object({ model: name, dir: z.string().min(1) }).strict(),
    response: z.object({ files: z.array(z.string()), step: int }),
  },
  load_state: {
    request: z.object({ model: name, dir: z.string().min(1) }).strict(),
    /** `model`: the model's info after the state re-created its adapters and value head. */
    response: z.object({ step: int, model: ModelInfo }),
  },
  /** Returns its tensors unchanged: measures the transport alone. */
  echo: {
    request: z.object({ tensors: z.record(z.string(), TensorRef) }).strict(),
    response: z.object({ tensors: z.record(z.string(), TensorRef) }),
  },
  cancel: {
    request: z.object({ request_id: int }).strict(),
    response: z.object({ cancelled: z.boolean() }),
  },
  shutdown: { request: z.object({}).strict(), response: z.object({}) },
} as const;

export type OpName = keyof typeof ops;

export const RequestEnvelope = z
  .object({
    id: int.nonnegative(),
    op: z.enum(Object.keys(ops) as [OpName, ...OpName[]]),
    body: z.record(z.string(), z.unknown()),
    buffers: z.array(z.tuple([int.nonnegative(), int.nonnegative()])),
  })
  .strict();

/** The kinds of error the Python bridge reports in a failed response's `error.type`. */
export const REMOTE_ERROR_KINDS = [
  "bad_input", // the bridge understood the request but could not carry it out
  "invalid_request", // the request did not match the protocol schema
  "internal", // an unexpected Python exception
  "cancelled", // the caller cancelled the request
] as const;
export type RemoteErrorKind = (typeof REMOTE_ERROR_KINDS)[number];

/** Every kind a BridgeError can have: the bridge's, then those the client raises itself. */
export const ERROR_KINDS = [
  ...REMOTE_ERROR_KINDS,
  "crashed", // the bridge process died or the connection dropped
  "start_failed", // the bridge could not be started
  "not_running", // connect({ start: false }) found no bridge running
  "handshake", // wrong token or protocol version
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

const ErrorBody = z.object({
  /** A kind this client does not know (a newer bridge) reads as "internal". */
  type: z.enum(REMOTE_ERROR_KINDS).catch("internal"),
  message: z.string(),
  traceback: z.string(),
});

export const ResponseEnvelope = z.union([
  z.object({
    id: int,
    ok: z.literal(true),
    body: z.record(z.string(), z.unknown()),
    buffers: z.array(z.tuple([int, int])),
  }),
  z.object({ id: int, ok: z.literal(false), op: z.string(), error: ErrorBody }),
]);

/** JSON Schema for the Python side: the envelope plus one request schema per op. */
export function protocolJsonSchema(): Record<string, unknown> {
  const requests: Record<string, unknown> = {};
  for (const [op, { request }] of Object.entries(ops)) {
    requests[op] = z.toJSONSchema(request, { target: "draft-2020-12", reused: "inline" });
  }
  return {
    protocol_version: PROTOCOL_VERSION,
    generated_from: "cells-lib/bridge/protocol.ts",
    exit_codes: EXIT_CODES,
    onnx_opsets: ONNX_OPSETS,
    error_kinds: REMOTE_ERROR_KINDS,
    envelope: z.toJSONSchema(RequestEnvelope, { target: "draft-2020-12" }),
    requests,
  };
}
