/** Training cells, Tinker-style: the loop is yours (in a cell), the bridge does forward/backward
 * and optimizer steps. */
import path from "node:path";
import { z } from "zod";
import { Tensor } from "../bridge/frames.ts";
import { AGGREGATIONS, LoraTargets } from "../bridge/protocol.ts";
import { OptionsError, parseOptions } from "../util/options.ts";
import type { Model } from "./model.ts";

const LoraOptions = z
  .object({
    rank: z.number().int().min(1).default(16),
    alpha: z.number().positive().optional(), // default: 2 × rank
    dropout: z.number().min(0).lt(1).default(0.05),
    /** "all-linear", or names among the model's `info.lora_targets` (q_proj … down_proj natively). */
    targets: LoraTargets.default("all-linear"),
    /** Fixes the adapters' random initialisation. */
    seed: z.number().int().nonnegative().default(0),
  })
  .strict();
export type LoraOptions = z.input<typeof LoraOptions>;

/** Freezes the base model and trains low-rank adapters instead. Returns the model with its
 * new parameter counts (`info.trainable_parameters`). */
export async function applyLora(model: Model, options: LoraOptions = {}): Promise<Model> {
  const o = parseOptions(LoraOptions, options, "applyLora");
  const offered = model.info.lora_targets;
  const unknown = o.targets === "all-linear" ? [] : o.targets.filter((t) => !offered.includes(t));
  if (unknown.length) {
    throw new OptionsError(
      `applyLora: option "targets": ${unknown.map((t) => `"${t}"`).join(", ")} is not a projection of this ` +
        `${model.info.model_type} model; expected "all-linear" or names among ${offered.join(", ")}`,
    );
  }
  const info = await model.client.call("apply_lora", {
    model: model.name,
    rank: o.rank,
    alpha: o.alpha ?? 2 * o.rank,
    dropout: o.dropout,
    targets: o.targets,
    seed: o.seed,
  });
  return { ...model, info };
}

/** Drops the adapters: full fine-tuning of every parameter. */
export async function removeLora(model: Model): Promise<Model> {
  return { ...model, info: await model.client.call("remove_lora", { model: model.name }) };
}

/** Attaches PPO's value head (a trainable linear map from the last hidden state to V). */
export async function addValueHead(model: Model): Promise<Model> {
  return { ...model, info: await model.client.call("add_value_head", { model: model.name }) };
}

/** The value head's V for each token after the first of each sequence (aligned like
 * `logprobs`: V of the state before token t). */
export async function values(model: Model, sequences: readonly (readonly number[])[]): Promise<number[][]> {
  sequences.forEach((s, i) => {
    if (s.length < 2) throw new Error(`values: sequence ${i} has ${s.length} token(s); at least 2 are needed`);
  });
  const r = await model.client.call("values", {
    model: model.name,
    token_ids: Tensor.int32(sequences.flat()),
    lengths: Tensor.int32(sequences.map((s) => s.length)),
  });
  let offset = 0;
  return sequences.map((s) => {
    const start = offset;
    offset += s.length - 1;
    return Array.from(r.values.data.subarray(start, offset) as Float32Array);
  });
}

/** Turns the adapters off (the base model: the reference policy) or back on. */
export async function setAdapters(model: Model, enabled: boolean): Promise<void> {
  await model.client.call("set_adapters", { model: model.name, enabled });
}

/** One training sequence: its tokens and, per token, what the chosen loss needs. Per-token
 * arrays have one value per token; the value at token t belongs to predicting t from the
 * tokens before it (index 0 is ignored). */
export interface TrainingExample {
  tokens: readonly number[];
  /** cross_entropy: per-token weights (default 1 everywhere; 0 on prompt tokens for completion-only SFT). */
  weights?: readonly number[];
  /** policy_gradient / dpo: 1 on completion tokens (default: every token after the first). */
  mask?: readonly number[];
  /** policy_gradient: log-probs under the policy that sampled the tokens. */
  oldLogprobs?: readonly number[];
  /** policy_gradient / ppo: one advantage for the sequence, or one per token. */
  advantage?: number | readonly number[];
  /** ppo: the value head's V per token when the tokens were sampled (see `values`). */
  oldValues?: readonly number[];
  /** ppo: the return per token (GAE's advantage + V). */
  returns?: readonly number[];
  /** cross_entropy on packed examples (`packExamples`): where each starts in `tokens`. Each
   * attends only to itself, with positions from 0, and its first token is not trained. */
  starts?: readonly number[];
}

const policyGradient = {
  epsLow: z.number().min(0).default(0.2),
  epsHigh: z.number().min(0).default(0.2),
  ratioLevel: z.enum(["token", "sequence"]).default("token"),
  aggregation: z.enum(AGGREGATIONS).default("seq_mean_token_mean"),
  constant: z.number().positive().optional(),
  numTokens: z.number().positive().optional(),
  numSequences: z.number().positive().optional(),
  beta: z.number().min(0).default(0),
  entropyCoef: z.number().min(0).default(0),
  /** The sampling temperature of the completions: log-probs, reference and entropy are those of
   * softmax(logits / temperature), as `sample` returns them. */
  temperature: z.number().positive().default(1),
};

const Loss = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("cross_entropy"), numTokens: z.number().positive().optional() }).strict(),
  z.object({ kind: z.literal("policy_gradient"), ...policyGradient }).strict(),
  z
    .object({
      kind: z.literal("ppo"),
      ...policyGradient,
      /** Clip range of the value update around the old values. */
      valueClip: z.number().positive().default(0.2),
      valueCoef: z.number().min(0).default(0.5),
    })
    .strict(),
  z
    .object({
      kind: z.literal("dpo"),
      beta: z.number().positive().default(0.1),
      /** The reference's sequence log-probs (Σ over the mask), one per example; default: the
       * model with its adapters off. */
      refLogprobs: z.array(z.number()).optional(),
    })
    .strict(),
]);
export type TrainingLoss = z.input<typeof Loss>;

export interface ForwardBackwardResult {
  /** null when the loss was not finite (the step it belongs to will be skipped). */
  loss: number | null;
  metrics: Record<string, number | null>;
  tokens: number;
}

function perToken(
  examples: readonly TrainingExample[],
  pick: (e: TrainingExample, i: number) => readonly number[] | undefined,
  fallback: (e: TrainingExample) => number[],
  field: string,
  where: string,
): Tensor<"float32"> {
  const values: number[] = [];
  examples.forEach((e, i) => {
    const v = pick(e, i) ?? fallback(e);
    if (v.length !== e.tokens.length) {
      throw new Error(
        `${where}: example ${i}: ${field} has ${v.length} values for ${e.tokens.length} tokens (one per token)`,
      );
    }
    values.push(...v);
  });
  return Tensor.float32(values);
}

const afterFirst = (e: TrainingExample) => e.tokens.map((_, t) => (t === 0 ? 0 : 1));

const ForwardBackwardOptions = z
  .object({
    /** Multiplies the loss before backward (e.g. 1 / micro-batches for a mean over them). */
    lossScale: z.number().positive().default(1),
    /** Recompute layers in backward: less activation memory, ~30% more compute. */
    gradientCheckpointing: z.boolean().default(false),
  })
  .strict();
export type ForwardBackwardOptions = z.input<typeof ForwardBackwardOptions>;

/** The batch and loss as the bridge's forward_backward and forward take them; `where` names the
 * cell in messages. */
function lossBatch(model: Model, examples: readonly TrainingExample[], loss: TrainingLoss, where: string) {
  const l = parseOptions(Loss, loss, `${where} loss`);
  if (examples.length === 0) throw new Error(`${where}: no examples`);
  examples.forEach((e, i) => {
    if (e.tokens.length < 2)
      throw new Error(`${where}: example ${i} has ${e.tokens.length} token(s); at least 2 are needed to predict one`);
  });
  const tokens = (pick: (e: TrainingExample, i: number) => readonly number[] | undefined, field: string) =>
    perToken(examples, pick, afterFirst, field, where);
  const wire = (() => {
    switch (l.kind) {
      case "cross_entropy":
        return { kind: l.kind, weights: tokens((e) => e.weights, "weights"), num_tokens: l.numTokens ?? null };
      case "dpo": {
        if (l.refLogprobs && l.refLogprobs.length !== examples.length) {
          throw new Error(
            `${where}: dpo's refLogprobs has ${l.refLogprobs.length} values for ${examples.length} examples (one per example)`,
          );
        }
        const ref_logprobs = l.refLogprobs ? Tensor.float32(l.refLogprobs) : null;
        return { kind: l.kind, mask: tokens((e) => e.mask, "mask"), beta: l.beta, ref_logprobs };
      }
      case "policy_gradient":
      case "ppo": {
        const perSequence = examples.every((e) => typeof e.advantage === "number");
        const advantages = perSequence
          ? Tensor.float32(examples.map((e) => e.advantage as number))
          : tokens((e, i) => {
              if (e.advantage === undefined) throw new Error(`${where}: example ${i} has no advantage`);
              return typeof e.advantage === "number" ? e.tokens.map(() => e.advantage as number) : e.advantage;
            }, "advantage");
        const required = (field: "oldLogprobs" | "oldValues" | "returns") => (e: TrainingExample, i: number) => {
          const v = e[field];
          if (!v) throw new Error(`${where}: example ${i} has no ${field} (${l.kind} needs them)`);
          return v;
        };
        const common = {
          mask: tokens((e) => e.mask, "mask"),
          old_logprobs: tokens(required("oldLogprobs"), "oldLogprobs"),
          advantages,
          eps_low: l.epsLow,
          eps_high: l.epsHigh,
          ratio_level: l.ratioLevel,
          aggregation: l.aggregation,
          constant: l.constant ?? null,
          num_tokens: l.numTokens ?? null,
          num_sequences: l.numSequences ?? null,
          beta: l.beta,
          entropy_coef: l.entropyCoef,
          temperature: l.temperature,
        };
        if (l.kind === "policy_gradient") return { kind: l.kind, ...common };
        return {
          kind: l.kind,
          ...common,
          old_values: tokens(required("oldValues"), "oldValues"),
          returns: tokens(required("returns"), "returns"),
          value_clip: l.valueClip,
          value_coef: l.valueCoef,
        };
      }
    }
  })();
  return {
    model: model.name,
    token_ids: Tensor.int32(examples.flatMap((e) => [...e.tokens])),
    lengths: Tensor.int32(examples.map((e) => e.tokens.length)),
    example_lengths: exampleLengths(examples, where),
    loss: wire,
  };
}

/** Forward and backward on one (micro-)batch: gradients accumulate on the trainable
 * parameters until `optimStep`. Until then the model is this client's: another client's
 * forwardBackward / optimStep / resetOptimizer on it fails (a BridgeError naming this client). */
export async function forwardBackward(
  model: Model,
  examples: readonly TrainingExample[],
  loss: TrainingLoss,
  options: ForwardBackwardOptions = {},
): Promise<ForwardBackwardResult> {
  const o = parseOptions(ForwardBackwardOptions, options, "forwardBackward");
  const batch = lossBatch(model, examples, loss, "forwardBackward");
  return model.client.call("forward_backward", {
    ...batch,
    loss_scale: o.lossScale,
    gradient_checkpointing: o.gradientCheckpointing,
  });
}

/** The loss and metrics forwardBackward would report on the batch, computed without gradients
 * and without adapter dropout: evaluation (e.g. a validation loss). Gradients accumulated for
 * the next optimStep are left as they are. */
export async function forward(
  model: Model,
  examples: readonly TrainingExample[],
  loss: TrainingLoss,
): Promise<ForwardBackwardResult> {
  return model.client.call("forward", lossBatch(model, examples, loss, "forward"));
}

/** The packed examples' lengths, in token order, or null when every example is alone in its row. */
function exampleLengths(examples: readonly TrainingExample[], where: string): Tensor<"int32"> | null {
  if (!examples.some((e) => (e.starts?.length ?? 0) > 1)) return null;
  return Tensor.int32(
    examples.flatMap((e, i) => {
      const starts = e.starts ?? [0];
      starts.forEach((s, k) => {
        const previous = k === 0 ? -1 : starts[k - 1]!;
        if ((k === 0 && s !== 0) || s <= previous || s >= e.tokens.length) {
          throw new Error(
            `${where}: example ${i}: starts must begin at 0 and increase within its ${e.tokens.length} tokens, got [${starts.join(", ")}]`,
          );
        }
      });
      return starts.map((s, k) => (starts[k + 1] ?? e.tokens.length) - s);
    }),
  );
}

const OptimOptions = z
  .object({
    lr: z.number().nonnegative(),
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
    eps: z.number().positive().default(1e-8),
    weightDecay: z.number().min(0).default(0),
    /** null: no clipping. */
    maxGradNorm: z.number().positive().nullable().default(1),
  })
  .strict();
export type OptimOptions = z.input<typeof OptimOptions>;

export interface OptimStepResult {
  /** Before clipping; null when not finite, or when no micro-batch had a finite loss. */
  gradNorm: number | null;
  /** True when the update was refused (a non-finite loss or gradient, or an update that would
   * leave a weight non-finite, e.g. too large an lr): weights and optimizer state unchanged. */
  skipped: boolean;
  reason: string | null;
  step: number;
}

/** Applies the accumulated gradients with AdamW (clipped to maxGradNorm), then clears them. */
export async function optimStep(model: Model, options: OptimOptions): Promise<OptimStepResult> {
  const o = parseOptions(OptimOptions, options, "optimStep");
  const r = await model.client.call("optim_step", {
    model: model.name,
    lr: o.lr,
    beta1: o.betas[0],
    beta2: o.betas[1],
    eps: o.eps,
    weight_decay: o.weightDecay,
    max_grad_norm: o.maxGradNorm,
  });
  return { gradNorm: r.grad_norm, skipped: r.skipped, reason: r.reason, step: r.step };
}

/** Starts the optimizer afresh (moments and step count), keeping the weights: for a new
 * training phase, e.g. RL after SFT, whose gradients differ in scale from the previous ones. */
export async function resetOptimizer(model: Model): Promise<void> {
  await model.client.call("reset_optimizer", { model: model.name });
}

/** Forgets the gradients accumulated since the last optimStep (a loop stopped between
 * micro-batches), so the next step starts clean; true when there were some. */
export async function discardGradients(model: Model): Promise<boolean> {
  return (await model.client.call("discard_gradients", { model: model.name })).discarded;
}

/** Writes trainable weights, optimizer moments, RNG states and the step, atomically. */
export async function saveState(model: Model, dir: string): Promise<{ files: string[]; step: number }> {
  return model.client.call("save_state", { model: model.name, dir: path.resolve(dir) });
}

/** Restores a saved state (re-creating its LoRA adapters and value head if the model has none);
 * `model` is the handle with the info as it is now. */
export async function loadState(model: Model, dir: string): Promise<{ step: number; model: Model }> {
  const r = await model.client.call("load_state", { model: model.name, dir: path.resolve(dir) });
  return { step: r.step, model: { ...model, info: r.model } };
}
