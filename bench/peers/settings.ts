/** What `npm run bench:peers` runs, in one place: the full run's settings and the 2-step smoke
 * version the test runs. Both sides get the same values; the output repeats them. */

export const LOSS_TYPES = ["grpo", "dr_grpo", "dapo"] as const;
export type LossType = (typeof LOSS_TYPES)[number];

/** How each loss type is configured on each side (docs/algorithms.md; TRL 1.16's GRPOConfig). thinkcells' DAPO
 * also draws more prompts until every group is informative (dynamic sampling); TRL's GRPOTrainer has no such
 * option, so it is off here and both sides do the same work per step. */
export const LOSS_SETTINGS: Record<
  LossType,
  {
    thinkcells: { algo: LossType; settings: Record<string, unknown> };
    trl: { loss_type: LossType; scale_rewards: "group" | "none"; epsilon: number; epsilon_high: number };
    /** DAPO's soft overlong penalty: thinkcells adds it to the reward itself, TRL as a second reward function. */
    overlong: boolean;
  }
> = {
  grpo: {
    thinkcells: { algo: "grpo", settings: {} },
    trl: { loss_type: "grpo", scale_rewards: "group", epsilon: 0.2, epsilon_high: 0.2 },
    overlong: false,
  },
  dr_grpo: {
    thinkcells: { algo: "dr_grpo", settings: {} },
    trl: { loss_type: "dr_grpo", scale_rewards: "none", epsilon: 0.2, epsilon_high: 0.2 },
    overlong: false,
  },
  dapo: {
    thinkcells: { algo: "dapo", settings: { dynamicSampling: false } },
    trl: { loss_type: "dapo", scale_rewards: "group", epsilon: 0.2, epsilon_high: 0.28 },
    overlong: true,
  },
};

export interface LoraSpec {
  rank: number;
  alpha: number;
  dropout: number;
}

export interface GrpoSettings {
  steps: number;
  groupSize: number;
  promptsPerStep: number;
  /** Sequences per forward/backward (TRL: per_device_train_batch_size, the rest by gradient accumulation). */
  microBatchSize: number;
  maxNewTokens: number;
  temperature: number;
  lr: number;
  beta: number;
}

export interface Settings {
  /** torch threads on both sides. */
  threads: number;
  /** The demo's data (notebooks/03): generated arithmetic, split with seed 0. */
  data: { rows: number; seed: number; heldOut: number; evalMaxNewTokens: number };
  /** The SFT cold start of the demo, which is also the SFT row and the checkpoint GRPO and DPO start from. */
  sft: { steps: number; batchSize: number; lr: number; warmupSteps: number };
  grpo: GrpoSettings & { seeds: number[]; lossTypes: LossType[] };
  /** GRPO speed and memory on a random model shaped like Qwen2.5-0.5B (vocabulary 151,936), LoRA on every projection. */
  qwen: GrpoSettings & { shape: "qwen2.5-0.5b" | "tiny"; lora: LoraSpec };
  /** notebooks/05's DPO, from the SFT checkpoint: generated preference pairs, LoRA (the reference is the model with it off). */
  dpo: { pairs: number; seed: number; steps: number; batchSize: number; lr: number; beta: number; lora: LoraSpec };
}

const DEMO_GRPO: GrpoSettings = {
  steps: 40,
  groupSize: 8,
  promptsPerStep: 16,
  microBatchSize: 64,
  maxNewTokens: 48,
  temperature: 1,
  lr: 5e-5,
  beta: 0,
};

export function fullSettings(cores: number): Settings {
  return {
    threads: cores,
    data: { rows: 2400, seed: 1, heldOut: 300, evalMaxNewTokens: 48 },
    sft: { steps: 160, batchSize: 64, lr: 2e-3, warmupSteps: 8 },
    grpo: { ...DEMO_GRPO, seeds: [1, 2, 3], lossTypes: [...LOSS_TYPES] },
    qwen: {
      shape: "qwen2.5-0.5b",
      steps: 3,
      groupSize: 4,
      promptsPerStep: 2,
      microBatchSize: 8,
      maxNewTokens: 32,
      temperature: 1,
      lr: 1e-5,
      beta: 0,
      lora: { rank: 16, alpha: 32, dropout: 0 },
    },
    dpo: {
      pairs: 600,
      seed: 2,
      steps: 60,
      batchSize: 8,
      lr: 1e-3,
      beta: 0.1,
      lora: { rank: 8, alpha: 16, dropout: 0.05 },
    },
  };
}

/** Every row of the full run, 2 steps each at tiny sizes: what test/bench-peers.test.ts runs. One thread, so that
 * the two sides do not fight over the cores of a busy test machine. */
export function smokeSettings(): Settings {
  const tiny = {
    steps: 2,
    groupSize: 2,
    promptsPerStep: 2,
    microBatchSize: 4,
    maxNewTokens: 8,
    temperature: 1,
    beta: 0,
  };
  return {
    threads: 1,
    data: { rows: 2400, seed: 1, heldOut: 8, evalMaxNewTokens: 8 },
    sft: { steps: 2, batchSize: 8, lr: 2e-3, warmupSteps: 0 },
    grpo: { ...tiny, lr: 5e-5, seeds: [1], lossTypes: [...LOSS_TYPES] },
    qwen: { ...tiny, shape: "tiny", promptsPerStep: 1, lr: 1e-5, lora: { rank: 4, alpha: 8, dropout: 0 } },
    dpo: {
      pairs: 40,
      seed: 2,
      steps: 2,
      batchSize: 2,
      lr: 1e-3,
      beta: 0.1,
      lora: { rank: 4, alpha: 8, dropout: 0.05 },
    },
  };
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : DeepPartial<T[K]> };

/** `settings` with `overrides` (e.g. `{"grpo": {"steps": 5}}`) merged in, objects key by key, lists as given. */
export function withOverrides(settings: Settings, overrides: DeepPartial<Settings>): Settings {
  const merge = (a: unknown, b: unknown): unknown => {
    if (b === undefined) return a;
    const plain = (x: unknown) => typeof x === "object" && x !== null && !Array.isArray(x);
    if (!plain(a) || !plain(b)) return b;
    const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
    for (const [k, v] of Object.entries(b as Record<string, unknown>)) {
      if (!(k in out)) throw new Error(`--settings: unknown setting "${k}"`);
      out[k] = merge(out[k], v);
    }
    return out;
  };
  return merge(settings, overrides) as Settings;
}
