/** GRPO and its variants (Dr.GRPO, DAPO, GSPO, GRPO-LEAD) and PPO as one readable loop, run on
 * the client: sample G completions per prompt, score them with TypeScript reward functions,
 * turn rewards into advantages, then μ clipped policy updates on the bridge. */
import { z } from "zod";
import type { Model } from "../cells/model.ts";
import { type Completion, sample } from "../cells/sample.ts";
import {
  addValueHead,
  forwardBackward,
  optimStep,
  type TrainingExample,
  type TrainingLoss,
  values as valueHead,
} from "../cells/train.ts";
import { type ChatTemplate, ChatTemplateSchema, type TemplateName } from "../chat/templates.ts";
import { type PromptRow, promptTokens } from "../chat/tokenize.ts";
import { table } from "../display/table.ts";
import { dynamicSample, isInformative } from "../rl/dynamic-sampling.ts";
import { gae, whiten } from "../rl/gae.ts";
import {
  combineRewards,
  type RewardContext,
  type RewardScores,
  type RewardSpecs,
  RewardTimeoutMs,
} from "../rl/rewards.ts";
import { mean, present, sampleStd } from "../rl/stats.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { stopIfAborted } from "../training/abort.ts";
import { checkLoopOptions, optimizerShape, runShape, WarmupSteps } from "../training/cell-options.ts";
import { dataOrder } from "../training/data-order.ts";
import { type Trainer, TrainingLoop } from "../training/loop.ts";
import { lrSchedule } from "../training/schedule.ts";
import { OptionsError, parseOptions } from "../util/options.ts";
import { seededShuffle } from "../util/random.ts";
import { type ScoredGroup, stepAdvantages } from "./advantages.ts";
import { ALGORITHM_SETTINGS, ALGORITHMS, AlgorithmSettings } from "./algorithms.ts";
import { policyExample, ppoExample, type Rollout } from "./examples.ts";
import { type RolloutStep, rolloutStep, type StepRollouts } from "./rollouts.ts";

/** A prompt (or conversation) to train on; `reference` is what correctness rewards check. */
export type GrpoRow = PromptRow & { reference?: string };

const Settings = AlgorithmSettings.partial().strict();

type Rewards = RewardSpecs<GrpoRow> | (() => RewardSpecs<GrpoRow>);

const GrpoOptions = z
  .object({
    algo: z.enum(ALGORITHMS).default("grpo"),
    /** Overrides of the algorithm's settings (see ALGORITHM_SETTINGS). */
    settings: Settings.default({}),
    /** The reward functions and weights (or a getter): read again every step. */
    rewards: z.custom<Rewards>(
      (v) => typeof v === "function" || (typeof v === "object" && v !== null),
      "rewards must be { name: { fn, weight } } or a function returning that",
    ),
    /** The name of the reward that says whether a completion is right (a value above 0.5): the
     * `accuracy` metric and GRPO-LEAD's length-aware reward and difficulty weights read it;
     * GRPO-LEAD needs it. */
    correctness: z.string().min(1).optional(),
    /** What a failing reward does: skip the sample (advantage 0) or stop the step. */
    onRewardError: z.enum(["skip-sample", "stop"]).default("stop"),
    /** A reward call that gives no result within this many ms fails (then onRewardError applies). */
    rewardTimeoutMs: RewardTimeoutMs,
    /** Completions per prompt (G). */
    groupSize: z.number().int().min(1).default(8),
    promptsPerStep: z.number().int().min(1).default(16),
    maxNewTokens: z.number().int().min(1).default(256),
    temperature: z.number().gt(0).default(1),
    topP: z.number().gt(0).max(1).default(1),
    stopStrings: z.array(z.string().min(1)).default([]),
    template: z.union([z.string(), ChatTemplateSchema]).default("plain"),
    /** lr, schedule, warmupSteps, weightDecay, maxGradNorm. */
    ...optimizerShape({ lr: 1e-5, schedule: "constant", warmupSteps: WarmupSteps.default(0) }),
    /** μ: passes over each sampled batch (>1 makes later passes off-policy). */
    updateEpochs: z.number().int().min(1).default(1),
    /** Optimizer steps per pass (the batch is split into this many mini-batches). */
    miniBatches: z.number().int().min(1).default(1),
    /** Sequences per forward/backward (gradient accumulation within a mini-batch). */
    microBatchSize: z.number().int().min(1).default(64),
    /** KL penalty to the adapter-disabled model (needs LoRA); 0 skips the reference pass. */
    beta: z.number().min(0).default(0),
    entropyCoef: z.number().min(0).default(0),
    /** DAPO: L_cache of the soft overlong penalty (default maxNewTokens / 4). */
    overlongCache: z.number().int().min(1).optional(),
    /** DAPO: at most this many sampling rounds per step while filling the batch. */
    maxDraws: z.number().int().min(1).default(4),
    /** PPO's GAE. */
    gamma: z.number().min(0).max(1).default(1),
    lambda: z.number().min(0).max(1).default(0.95),
    valueCoef: z.number().min(0).default(0.5),
    valueClip: z.number().positive().default(0.2),
    /** Show a table of sampled completions every N steps (0: never). */
    showSamplesEvery: z.number().int().min(0).default(10),
    /** The last N steps' rollouts the trainer keeps for `inspectRollouts` (0: none). */
    keepRollouts: z.number().int().min(0).default(1),
    /** Also keep each sampled token's entropy in the rollouts (inspectRollouts' "entropy"
     * shading); costs one more pass over the vocabulary per sampled token. */
    recordEntropy: z.boolean().default(false),
    /** Total steps, for the schedule and the progress bar. */
    steps: z.number().int().min(1).default(100),
    /** checkpoint, resume, seed (prompt order and sampling), display, signal, stopWhen. */
    ...runShape,
  })
  .strict();
export type GrpoOptions = Omit<z.input<typeof GrpoOptions>, "template"> & { template?: TemplateName | ChatTemplate };

/** null: no value this step (e.g. no reward gave one, or it was not finite). */
const NumberOrNull = z.number().nullable();

export const GrpoStepMetrics = z.object({
  step: z.number().int(),
  /** Mean total reward over the step's completions (all sampled, before overlong/LEAD adjustments). */
  reward: NumberOrNull,
  rewardStd: NumberOrNull,
  /** Mean and std of each reward function. */
  rewards: z.record(z.string(), z.object({ mean: NumberOrNull, std: NumberOrNull })),
  /** Mean of the reward option `correctness` names, when it names one. */
  accuracy: NumberOrNull,
  loss: NumberOrNull,
  kl: NumberOrNull,
  clipFraction: NumberOrNull,
  entropy: NumberOrNull,
  gradNorm: NumberOrNull,
  /** Optimizer steps of this step that were skipped (non-finite loss, gradient or update: the
   * weights stayed), and the last one's reason. */
  skippedUpdates: z.number().int(),
  skipReason: z.string().nullable(),
  completionLength: z.number(),
  /** Completions cut off by maxNewTokens. */
  truncatedFraction: z.number(),
  /** Sampled groups whose rewards all tie (no learning signal). */
  zeroStdFraction: z.number(),
  /** Sampled completion tokens per second of the whole step. */
  tokensPerS: z.number(),
  sampleS: z.number(),
  trainS: z.number(),
  lr: z.number(),
  /** DAPO's dynamic sampling: groups drawn and kept this step. */
  groupsDrawn: z.number().int(),
  groupsKept: z.number().int(),
  /** Reward failures skipped this step (onRewardError: "skip-sample"). */
  rewardProblems: z.number().int(),
});
export type GrpoStepMetrics = z.output<typeof GrpoStepMetrics>;

/** What a checkpoint keeps beside the history: the prompts consumed so far (dynamic sampling
 * draws a varying number per step). */
const GrpoState = z.object({ cursor: z.number().int().min(0) });

interface Group {
  row: GrpoRow;
  promptIds: number[];
  completions: Completion[];
  scores: RewardScores;
}

/** RL runs no evaluations: its history is the record. */
export type GrpoTrainer = Trainer<GrpoStepMetrics, never> & {
  /** Replace the reward functions: the next step uses them. */
  rewards: Rewards;
  /** The last `keepRollouts` steps' samples, scores and advantages, oldest first (`inspectRollouts`). */
  readonly rollouts: RolloutStep[];
  readonly tokenizer: Tokenizer;
};

export async function grpoTrainer(
  model: Model,
  tokenizer: Tokenizer,
  prompts: readonly GrpoRow[],
  options: GrpoOptions,
): Promise<GrpoTrainer> {
  const o = parseOptions(GrpoOptions, options, "grpo");
  const settings: AlgorithmSettings = { ...ALGORITHM_SETTINGS[o.algo], ...o.settings };
  if (prompts.length === 0) throw new OptionsError("grpo: no prompts");
  checkLoopOptions(o, "grpo");
  if (settings.lead && o.correctness === undefined) {
    throw new OptionsError(
      'grpo: GRPO-LEAD needs option "correctness": the name of the reward that says whether a completion is right (e.g. correctness: "correctness")',
    );
  }
  if (o.correctness !== undefined) correctnessWeight(o.rewards, o.correctness);
  if (o.beta > 0 && model.info.lora === null) {
    throw new OptionsError(
      'grpo: option "beta" needs LoRA adapters (the reference policy is the model with its adapters off); applyLora first or set beta: 0',
    );
  }
  if (settings.ppo && !model.info.value_head) model = await addValueHead(model);
  const template = o.template as TemplateName | ChatTemplate;
  const encoded = prompts.map((row) => promptTokens(row, { tokenizer, template }));
  const order = dataOrder(prompts.length, o.seed);
  const lr = lrSchedule({
    kind: o.schedule,
    lr: o.lr,
    warmupSteps: Math.min(o.warmupSteps, o.steps - 1),
    totalSteps: o.schedule === "constant" ? undefined : o.steps,
  });
  const loop = new TrainingLoop({
    kind: "grpo",
    cell: "grpo",
    schemas: { step: GrpoStepMetrics, evaluation: z.never(), state: GrpoState },
    rank: { metric: "reward", mode: "max" },
    options: o,
  });
  const { resumed, model: resumedModel } = await loop.resume(model);
  model = resumedModel;
  // Prompts consumed so far: the data-order cursor.
  let cursor = resumed?.state.cursor ?? 0;
  const kept: RolloutStep[] = [];

  /** Samples G completions for each of `n` prompts from the cursor, and scores them. */
  async function draw(n: number, stepNumber: number): Promise<Group[]> {
    const indices = order.take(cursor, n);
    const seed = (o.seed * 1_000_003 + cursor) >>> 0;
    cursor += n;
    const completions = await sample(
      model,
      tokenizer,
      indices.map((i) => encoded[i]!),
      {
        n: o.groupSize,
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        topP: o.topP,
        stopStrings: o.stopStrings,
        seed,
        entropy: o.recordEntropy && o.keepRollouts > 0,
        signal: loop.signal,
      },
    );
    // Reward functions are read now: a redefinition in another cell applies from this step on.
    const scorer = combineRewards(trainer.rewards);
    return Promise.all(
      indices.map(async (index, k) => {
        const row = prompts[index]!;
        const mine = completions.slice(k * o.groupSize, (k + 1) * o.groupSize);
        const contexts: RewardContext<GrpoRow>[] = mine.map((c) => ({
          prompt: "prompt" in row ? row.prompt : row.messages.map((m) => m.content).join("\n"),
          completion: c.text,
          completionIds: c.tokenIds,
          ...(row.reference !== undefined ? { reference: row.reference } : {}),
          row,
          step: stepNumber,
        }));
        const scores = await scorer.score(contexts, { onError: o.onRewardError, timeoutMs: o.rewardTimeoutMs });
        return { row, promptIds: encoded[index]!, completions: mine, scores };
      }),
    );
  }

  /** A failed step gives its prompts back: run again, it samples the same ones (an interrupt
   * stops a step only before its update). */
  async function step(stepIndex: number): Promise<GrpoStepMetrics> {
    const from = cursor;
    try {
      return await trainStep(stepIndex);
    } catch (err) {
      cursor = from;
      throw err;
    }
  }

  async function trainStep(stepIndex: number): Promise<GrpoStepMetrics> {
    const started = Date.now();
    // Read before sampling: rewards renamed between steps fail here, not after the samples.
    const correctWeight = o.correctness === undefined ? undefined : correctnessWeight(trainer.rewards, o.correctness);
    // Every group sampled this step (for the metrics); `groups` are those trained on.
    const drawn: Group[] = [];
    const drawAndKeep = async (n: number) => {
      const batch = await draw(n, stepIndex + 1);
      drawn.push(...batch);
      return batch;
    };
    const groups = settings.dynamicSampling
      ? (
          await dynamicSample({
            draw: drawAndKeep,
            outcomes: (g: Group) => g.scores.totals,
            batchGroups: o.promptsPerStep,
            maxDraws: o.maxDraws,
          })
        ).groups
      : await drawAndKeep(o.promptsPerStep);
    const sampleS = (Date.now() - started) / 1000;
    const trainStart = Date.now();
    const rollouts: Rollout[] = groups.flatMap((g) =>
      g.completions.map((c) => ({ promptIds: g.promptIds, tokenIds: c.tokenIds, logprobs: c.logprobs })),
    );
    const scored: ScoredGroup[] = groups.map((g) => {
      const correct = o.correctness === undefined ? undefined : g.scores.values[o.correctness];
      return {
        totals: g.scores.totals,
        ...(correct && { correct: correct.map((v) => (v === null ? null : v > 0.5)) }),
        lengths: g.completions.map((c) => c.tokenIds.length),
        truncated: g.completions.map((c) => c.stopReason === "length"),
      };
    });
    const overlongCache = o.overlongCache ?? Math.max(1, Math.floor(o.maxNewTokens / 4));
    const adv = stepAdvantages(scored, {
      settings,
      maxNewTokens: o.maxNewTokens,
      overlongCache,
      ...(correctWeight !== undefined && { correctnessWeight: correctWeight }),
    });

    let examples: TrainingExample[];
    if (settings.ppo) {
      examples = await ppoExamples(rollouts, adv.rewards.flat());
    } else {
      const flatAdv = adv.advantages.flat();
      const flatKeep = adv.keep.flat();
      examples = rollouts.map((r, i) => policyExample(r, flatAdv[i]!, flatKeep[i]!));
    }
    // DAPO can end a step with no informative group (maxDraws reached): nothing to train on.
    const train = examples.length
      ? await update(examples, stepIndex)
      : {
          loss: null,
          kl: null,
          clipFraction: null,
          entropy: null,
          gradNorm: null,
          skippedUpdates: 0,
          skipReason: null,
        };
    const trainS = (Date.now() - trainStart) / 1000;
    // Kept once the step is applied: a stopped step leaves no rollouts behind.
    keepRollouts({ drawn, trained: groups, rewards: adv.rewards, keep: adv.keep, examples }, stepIndex);

    const all = drawn.flatMap((g) => g.completions);
    const totals = present(drawn.flatMap((g) => g.scores.totals));
    const rewardNames = new Set(drawn.flatMap((g) => Object.keys(g.scores.values)));
    const perFunction = Object.fromEntries(
      [...rewardNames].map((name) => {
        const vs = present(drawn.flatMap((g) => g.scores.values[name] ?? []));
        return [name, { mean: vs.length ? mean(vs) : null, std: vs.length ? sampleStd(vs) : null }];
      }),
    );
    const tokens = all.reduce((s, c) => s + c.tokenIds.length, 0);
    const metrics: GrpoStepMetrics = {
      step: stepIndex + 1,
      reward: totals.length ? mean(totals) : null,
      rewardStd: totals.length ? sampleStd(totals) : null,
      rewards: perFunction,
      accuracy: o.correctness === undefined ? null : (perFunction[o.correctness]?.mean ?? null),
      ...train,
      completionLength: all.length ? tokens / all.length : 0,
      truncatedFraction: all.length ? all.filter((c) => c.stopReason === "length").length / all.length : 0,
      zeroStdFraction: drawn.length ? drawn.filter((g) => !isInformative(g.scores.totals)).length / drawn.length : 0,
      tokensPerS: tokens / Math.max(1e-3, (Date.now() - started) / 1000),
      sampleS,
      trainS,
      lr: lr(stepIndex),
      groupsDrawn: drawn.length,
      groupsKept: groups.length,
      rewardProblems: drawn.reduce((s, g) => s + g.scores.problems.length, 0),
    };
    if (o.display && o.showSamplesEvery > 0 && metrics.step % o.showSamplesEvery === 0)
      showSamples(drawn, metrics.step);
    return metrics;
  }

  /** Keeps what this step sampled and the advantages it trained with, for inspectRollouts. */
  function keepRollouts(step: Omit<StepRollouts, "step" | "algo" | "temperature">, stepIndex: number) {
    if (o.keepRollouts === 0) return;
    kept.push(rolloutStep({ ...step, step: stepIndex + 1, algo: o.algo, temperature: o.temperature }));
    if (kept.length > o.keepRollouts) kept.shift();
  }

  /** PPO: V before each completion token, GAE on the final reward, whitened advantages. */
  async function ppoExamples(rollouts: Rollout[], rewards: (number | null)[]): Promise<TrainingExample[]> {
    const vs = await valueHead(
      model,
      rollouts.map((r) => [...r.promptIds, ...r.tokenIds]),
    );
    const perRollout = rollouts.map((r, i) => {
      const p = r.promptIds.length;
      const v = vs[i]!.slice(p - 1, p - 1 + r.tokenIds.length);
      const tokenRewards = r.tokenIds.map((_, t) => (t === r.tokenIds.length - 1 ? (rewards[i] ?? 0) : 0));
      return { v, ...gae(tokenRewards, v, { gamma: o.gamma, lambda: o.lambda }) };
    });
    const white = whiten(perRollout.flatMap((x) => x.advantages));
    let offset = 0;
    return rollouts.map((r, i) => {
      const n = r.tokenIds.length;
      const a = white.slice(offset, offset + n);
      offset += n;
      return ppoExample(r, a, perRollout[i]!.v, perRollout[i]!.returns);
    });
  }

  /** μ passes over the batch, each split into mini-batches (one optimizer step each). */
  async function update(examples: TrainingExample[], stepIndex: number) {
    const sums = { loss: 0, kl: 0, clipFraction: 0, entropy: 0, n: 0, klN: 0, optimizerSteps: 0 };
    let gradNorm: number | null = null;
    let skippedUpdates = 0;
    let skipReason: string | null = null;
    let lossValid = true;
    for (let epoch = 0; epoch < o.updateEpochs; epoch++) {
      const shuffled = epoch === 0 ? examples : seededShuffle(examples, (o.seed + stepIndex * 31 + epoch) >>> 0);
      const size = Math.ceil(shuffled.length / o.miniBatches);
      for (let start = 0; start < shuffled.length; start += size) {
        const mini = shuffled.slice(start, start + size);
        const numTokens = mini.reduce((s, e) => s + e.mask!.reduce((a, m) => a + m, 0), 0);
        const loss: TrainingLoss = {
          kind: settings.ppo ? "ppo" : "policy_gradient",
          epsLow: settings.epsLow,
          epsHigh: settings.epsHigh,
          ratioLevel: settings.ratioLevel,
          aggregation: settings.aggregation,
          numTokens: Math.max(1, numTokens),
          numSequences: mini.length,
          constant: mini.length * o.maxNewTokens,
          beta: o.beta,
          entropyCoef: o.entropyCoef,
          // The completions' old log-probs are sample()'s at this temperature: the loss scores the same distribution.
          temperature: o.temperature,
          ...(settings.ppo ? { valueCoef: o.valueCoef, valueClip: o.valueClip } : {}),
        } as TrainingLoss;
        for (let m = 0; m < mini.length; m += o.microBatchSize) {
          // Micro-batches already sent leave gradients the next step must not inherit. Once an
          // optimizer step is applied the step goes to its end: stopped there, it would be half-applied.
          if (sums.optimizerSteps === 0) await stopIfAborted(model, loop.signal, m > 0);
          const micro = mini.slice(m, m + o.microBatchSize);
          const r = await forwardBackward(model, micro, loss);
          if (r.loss === null) lossValid = false;
          else sums.loss += r.loss;
          const w = micro.length;
          sums.n += w;
          sums.clipFraction += (r.metrics.clip_fraction ?? 0) * w;
          sums.entropy += (r.metrics.entropy ?? 0) * w;
          if (typeof r.metrics.kl === "number") {
            sums.kl += r.metrics.kl * w;
            sums.klN += w;
          }
        }
        const opt = await optimStep(model, {
          lr: lr(stepIndex),
          weightDecay: o.weightDecay,
          maxGradNorm: o.maxGradNorm,
        });
        gradNorm = opt.gradNorm;
        if (opt.skipped) {
          skippedUpdates++;
          skipReason = opt.reason;
        }
        sums.optimizerSteps++;
      }
    }
    return {
      // Micro-batch losses add up to their mini-batch's loss: the mean over optimizer steps.
      loss: lossValid ? sums.loss / sums.optimizerSteps : null,
      kl: sums.klN ? sums.kl / sums.klN : null,
      clipFraction: sums.n ? sums.clipFraction / sums.n : null,
      entropy: sums.n ? sums.entropy / sums.n : null,
      gradNorm,
      skippedUpdates,
      skipReason,
    };
  }

  const trainer: GrpoTrainer = loop.start(
    {
      model,
      totalSteps: o.steps,
      step,
      nonFinite: (m) => m.skippedUpdates > 0,
      state: () => ({ cursor }),
      checkpointMetrics: (m) => ({ reward: m.reward, accuracy: m.accuracy }),
      chart: {
        title: o.algo.toUpperCase(),
        metrics: [
          "reward",
          "accuracy",
          "kl",
          "entropy",
          "clipFraction",
          "completionLength",
          "zeroStdFraction",
          "tokensPerS",
        ],
        barInfo: ["reward", "accuracy"],
      },
    },
    resumed,
    { rewards: o.rewards, rollouts: kept, tokenizer },
  );
  return trainer;
}

/** The weight of the reward `name` among the current rewards; a name they lack is an error. */
function correctnessWeight(rewards: Rewards, name: string): number {
  const specs = typeof rewards === "function" ? rewards() : rewards;
  const list = Array.isArray(specs) ? specs : Object.entries(specs).map(([n, s]) => ({ name: n, ...s }));
  const spec = list.find((s) => s.name === name);
  if (!spec)
    throw new OptionsError(
      `grpo: option "correctness" names the reward "${name}", but the rewards are ${list.map((s) => `"${s.name}"`).join(", ")}`,
    );
  return spec.weight;
}

function showSamples(groups: readonly Group[], step: number): void {
  const rows = groups.slice(0, 4).flatMap((g) =>
    g.completions.slice(0, 2).map((c, i) => ({
      prompt: "prompt" in g.row ? g.row.prompt : (g.row.messages.at(-1)?.content ?? ""),
      reference: g.row.reference ?? "",
      completion: c.text,
      reward: g.scores.totals[i] === null ? "—" : Number(g.scores.totals[i]!.toFixed(3)),
    })),
  );
  table(rows, { title: `Samples at step ${step}` });
}

/** Runs `options.steps` steps (or the rest of them after a resume) and returns the trainer. */
export async function trainGrpo(
  model: Model,
  tokenizer: Tokenizer,
  prompts: readonly GrpoRow[],
  options: GrpoOptions,
): Promise<GrpoTrainer> {
  const trainer = await grpoTrainer(model, tokenizer, prompts, options);
  await trainer.run();
  return trainer;
}

/** One step of a trainer (for loops written in cells). */
export function grpoStep(trainer: GrpoTrainer): Promise<GrpoStepMetrics> {
  return trainer.step();
}
