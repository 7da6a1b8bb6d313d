/** The four comparisons of `npm run bench:peers`, each one pair of jobs (or one per seed and loss type) and the
 * rows it yields: SFT (whose thinkcells run is the checkpoint the others start from), GRPO, DPO, and GRPO at
 * Qwen2.5-0.5B's shape. Models are scored afterwards, by the same thinkcells code for both sides. */
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { findPython } from "../../cells-lib/bridge/client.ts";
import { loadTokenizer, type Tokenizer } from "../../cells-lib/index.ts";
import {
  type ArithmeticRow,
  drawnPrompts,
  preferenceData,
  promptIds,
  sftExamples,
  tokenizePairs,
  trlPair,
} from "./data.ts";
import { type GrpoJob, type JobResult, type Runner, SIDES, type Side } from "./jobs.ts";
import { type Evaluator, rewardAccuracy } from "./measure.ts";
import { type Row, row } from "./report.ts";
import { type GrpoSettings, LOSS_SETTINGS, type LossType, type Settings } from "./settings.ts";

const here = path.dirname(fileURLToPath(import.meta.url));

export interface Context {
  settings: Settings;
  /** Where models, scratch space and job files go. */
  work: string;
  runner: Runner;
  evaluator: Evaluator;
  /** stories260K's, which every stories260K model shares. */
  tokenizer: Tokenizer;
  data: { train: ArithmeticRow[]; heldOut: ArithmeticRow[] };
  log: (line: string) => void;
}

type Pair = Record<Side, JobResult>;

const mib = (bytes: number) => bytes / 2 ** 20;
const perStep = (r: JobResult) => r.loop_seconds / r.step_seconds.length;
const cpuPerStep = (r: JobResult) => r.cpu_seconds / r.step_seconds.length;
const cpuNote = "CPU time of the side's processes (every thread) / steps: less at the mercy of a busy machine";
const sampledTps = (r: JobResult) => r.sampled_tokens! / r.sample_seconds!;
/** The mean training loss over the last tenth of the steps (at least one), as each side logged it. */
const finalLoss = (r: JobResult) => {
  const tail = r.loss.slice(-Math.max(1, Math.floor(r.loss.length / 10))).filter((x): x is number => x !== null);
  return tail.reduce((s, x) => s + x, 0) / tail.length;
};
const each = <T>(runs: readonly Record<Side, T>[], f: (x: T) => number) => ({
  thinkcells: runs.map((r) => f(r.thinkcells)),
  trl: runs.map((r) => f(r.trl)),
});
const memoryRow = (name: string, runs: readonly Pair[]) =>
  row(
    name,
    "MiB",
    "lower",
    each(runs, (r) => mib(r.peak_rss_bytes)),
    "peak RSS",
    "no_higher",
  );

/** What every job shares; the trained model goes to `${work}/${name}-${side}`. */
function common(ctx: Context, side: Side, name: string, steps: number, seed = 0) {
  return {
    out_dir: path.join(ctx.work, `${name}-${side}`),
    work_dir: path.join(ctx.work, `${name}-${side}-scratch`),
    result: "",
    steps,
    seed,
    warmup_steps: 0,
    threads: ctx.settings.threads,
  };
}

/** SFT from stories260K on both sides. thinkcells' run is the demo's cold start: its export is the checkpoint. */
export async function compareSft(ctx: Context, baseDir: string) {
  const s = ctx.settings.sft;
  const rows = ctx.data.train.map(({ prompt, completion }) => ({ prompt, completion }));
  const examples = sftExamples(rows, ctx.tokenizer);
  const runs = await ctx.runner.pair("sft", (side) => ({
    ...common(ctx, side, "sft", s.steps),
    kind: "sft",
    model_dir: baseDir,
    lr: s.lr,
    warmup_steps: s.warmupSteps,
    rows,
    examples,
    batch_size: s.batchSize,
  }));
  const checkpoint = path.join(ctx.work, "sft-thinkcells");
  const heldOut = sftExamples(ctx.data.heldOut, ctx.tokenizer);
  const heldOutLoss = {
    thinkcells: [await ctx.evaluator.loss(checkpoint, heldOut)],
    trl: [await ctx.evaluator.loss(path.join(ctx.work, "sft-trl"), heldOut)],
  };
  const start = await ctx.evaluator.accuracy(checkpoint, ctx.data.heldOut, ctx.settings.data.evalMaxNewTokens);
  ctx.log(`SFT checkpoint: held-out accuracy ${(100 * start.accuracy).toFixed(1)}%`);
  const meanTokens = examples.reduce((n, e) => n + e.tokens.length, 0) / examples.length;
  const shape = `stories260K, full fine-tuning, ${s.batchSize} rows × ${meanTokens.toFixed(1)} tokens (mean), ${s.steps} steps`;
  const result: Row[] = [
    row(
      "sft.tokens_per_s",
      "tokens/s",
      "higher",
      each([runs], (r) => (s.steps * s.batchSize * meanTokens) / r.loop_seconds),
      shape,
      "no_slower",
    ),
    row(
      "sft.final_train_loss",
      "nats",
      "lower",
      each([runs], finalLoss),
      "each side's logged loss, last tenth of the steps",
    ),
    row("sft.held_out_loss", "nats", "lower", heldOutLoss, `${heldOut.length} held-out rows, scored by thinkcells`),
    memoryRow("sft.peak_rss_mib", [runs]),
  ];
  return { rows: result, runs, checkpoint, start };
}

function grpoJob(
  ctx: Context,
  side: Side,
  name: string,
  g: GrpoSettings,
  loss: LossType,
  seed: number,
  modelDir: string,
  tokenizer: Tokenizer,
): GrpoJob {
  const prompts = ctx.data.train.map(({ prompt, reference }) => ({ prompt, reference }));
  const drawn = drawnPrompts(prompts, seed, g.steps * g.promptsPerStep);
  const l = LOSS_SETTINGS[loss];
  return {
    ...common(ctx, side, name, g.steps, seed),
    kind: "grpo",
    model_dir: modelDir,
    lr: g.lr,
    train_prompts: prompts,
    prompts: drawn,
    prompt_ids: promptIds(drawn, tokenizer),
    group_size: g.groupSize,
    prompts_per_step: g.promptsPerStep,
    micro_batch_size: g.microBatchSize,
    max_new_tokens: g.maxNewTokens,
    temperature: g.temperature,
    beta: g.beta,
    loss,
    algo_settings: l.thinkcells.settings,
    ...l.trl,
    // thinkcells' default L_cache: a quarter of the completion budget.
    overlong: l.overlong
      ? { max_length: g.maxNewTokens, cache_length: Math.max(1, Math.floor(g.maxNewTokens / 4)) }
      : null,
    lora: null,
  };
}

/** GRPO from the checkpoint for every seed and loss type; each pair's models scored on the held-out problems. */
export async function compareGrpo(ctx: Context, checkpoint: string, startAccuracy: number) {
  const g = ctx.settings.grpo;
  const byLoss = new Map<LossType, { runs: Pair[]; accuracy: Record<Side, number>[] }>();
  for (const seed of g.seeds) {
    for (const loss of g.lossTypes) {
      const name = `grpo-${loss}-${seed}`;
      const runs = await ctx.runner.pair(name, (side) =>
        grpoJob(ctx, side, name, g, loss, seed, checkpoint, ctx.tokenizer),
      );
      const accuracy = {} as Record<Side, number>;
      for (const side of SIDES) {
        const dir = path.join(ctx.work, `${name}-${side}`);
        accuracy[side] = (
          await ctx.evaluator.accuracy(dir, ctx.data.heldOut, ctx.settings.data.evalMaxNewTokens)
        ).accuracy;
      }
      ctx.log(`${name}: held-out accuracy thinkcells ${accuracy.thinkcells}, TRL ${accuracy.trl}`);
      const entry = byLoss.get(loss) ?? { runs: [], accuracy: [] };
      entry.runs.push(runs);
      entry.accuracy.push(accuracy);
      byLoss.set(loss, entry);
    }
  }
  const shape = `stories260K, G = ${g.groupSize}, ${g.promptsPerStep} prompts/step, ${g.maxNewTokens} new tokens, ${g.steps} steps`;
  const rows = [...byLoss].flatMap(([loss, { runs, accuracy }]) => [
    row(
      `grpo.${loss}.seconds_per_step`,
      "s",
      "lower",
      each(runs, perStep),
      `${shape}, ${runs.length} seed(s)`,
      "3x_faster",
    ),
    row(`grpo.${loss}.cpu_seconds_per_step`, "s", "lower", each(runs, cpuPerStep), cpuNote),
    row(
      `grpo.${loss}.sampled_tokens_per_s`,
      "tokens/s",
      "higher",
      each(runs, sampledTps),
      "completion tokens / sampling time",
    ),
    memoryRow(`grpo.${loss}.peak_rss_mib`, runs),
    row(
      `grpo.${loss}.held_out_accuracy`,
      "fraction",
      "higher",
      each(accuracy, (a) => a),
      `${ctx.data.heldOut.length} held-out problems, greedy, scored by thinkcells; the SFT checkpoint: ${startAccuracy.toFixed(3)}`,
      "within_sd",
    ),
  ]);
  return { rows, runs: Object.fromEntries(byLoss) };
}

/** DPO from the checkpoint with LoRA; reward accuracy on held-out pairs against the checkpoint. */
export async function compareDpo(ctx: Context, checkpoint: string) {
  const d = ctx.settings.dpo;
  const prefs = preferenceData(d);
  const trainPairs = tokenizePairs(prefs.train, ctx.tokenizer);
  const heldOutPairs = tokenizePairs(prefs.heldOut, ctx.tokenizer);
  const runs = await ctx.runner.pair("dpo", (side) => ({
    ...common(ctx, side, "dpo", d.steps),
    kind: "dpo",
    model_dir: checkpoint,
    lr: d.lr,
    rows: prefs.train,
    pairs: trainPairs.map(trlPair),
    batch_size: d.batchSize,
    beta: d.beta,
    lora: d.lora,
  }));
  const reference = await ctx.evaluator.pairLogprobs(checkpoint, heldOutPairs);
  const accuracy: Record<Side, number[]> = { thinkcells: [], trl: [] };
  for (const side of SIDES) {
    const policy = await ctx.evaluator.pairLogprobs(path.join(ctx.work, `dpo-${side}`), heldOutPairs);
    accuracy[side].push(rewardAccuracy(policy, reference));
  }
  const rows: Row[] = [
    row(
      "dpo.pairs_per_s",
      "pairs/s",
      "higher",
      each([runs], (r) => (d.steps * d.batchSize) / r.loop_seconds),
      `from the SFT checkpoint, LoRA r${d.lora.rank}, ${d.batchSize} pairs a step, ${d.steps} steps`,
      "no_slower",
    ),
    row(
      "dpo.held_out_reward_accuracy",
      "fraction",
      "higher",
      accuracy,
      `${heldOutPairs.length} held-out pairs, reference: the SFT checkpoint, scored by thinkcells`,
    ),
    memoryRow("dpo.peak_rss_mib", [runs]),
  ];
  return { rows, runs };
}

/** GRPO speed and memory at a real model's shape: random weights, LoRA, nothing kept or scored. */
export async function compareQwen(ctx: Context) {
  const q = ctx.settings.qwen;
  const dir = path.join(ctx.work, "qwen");
  execFileSync(findPython(), [path.join(here, "make_qwen_shape.py"), dir, q.shape], { stdio: "ignore" });
  const tokenizer = await loadTokenizer(dir);
  const runs = await ctx.runner.pair("qwen", (side) => ({
    ...grpoJob(ctx, side, "qwen", q, "grpo", 1, dir, tokenizer),
    out_dir: null,
    lora: q.lora,
  }));
  const shape = `random ${q.shape} (vocab 151,936), LoRA r${q.lora.rank}, G = ${q.groupSize}, ${q.promptsPerStep} prompts/step`;
  const rows: Row[] = [
    row(
      "grpo_qwen.seconds_per_step",
      "s",
      "lower",
      each([runs], perStep),
      `${shape}, ${q.maxNewTokens} new tokens, ${q.steps} steps`,
      "3x_faster",
    ),
    row("grpo_qwen.cpu_seconds_per_step", "s", "lower", each([runs], cpuPerStep), cpuNote),
    row(
      "grpo_qwen.sampled_tokens_per_s",
      "tokens/s",
      "higher",
      each([runs], sampledTps),
      "completion tokens / sampling time",
    ),
    memoryRow("grpo_qwen.peak_rss_mib", [runs]),
  ];
  return { rows, runs };
}
