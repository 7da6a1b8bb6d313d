/**
 * thinkcells' side of `npm run bench:peers`: runs one job (GRPO, SFT or DPO) described by a JSON file that
 * bench/peers/run.ts writes, with the library's cells as a notebook would (a session of its own, loadModel,
 * grpoTrainer / sftTrainer / dpoTrainer, exportModel), and writes its result as JSON to the job's `result`.
 *
 * usage: tsx bench/peers/thinkcells-side.ts JOB.json
 */
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import {
  applyLora,
  bridge,
  correctnessReward,
  dpoTrainer,
  exportModel,
  grpoTrainer,
  loadModel,
  loadTokenizer,
  type Model,
  sftTrainer,
  status,
  type Tokenizer,
} from "../../cells-lib/index.ts";
import type { DpoJob, GrpoJob, Job, JobResult, SftJob } from "./jobs.ts";

/** CPU seconds used so far by this Node process and by the bridge (from /proc: Linux counts in 1/100 s). */
async function cpuSeconds(): Promise<number> {
  const stat = readFileSync(`/proc/${(await bridge()).hello.pid}/stat`, "utf8");
  // utime and stime: fields 14 and 15, counted after the command name's closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const bridgeTicks = Number(fields[11]) + Number(fields[12]);
  const node = process.cpuUsage();
  return bridgeTicks / 100 + (node.user + node.system) / 1e6;
}

/** Runs `steps` steps one at a time and times each: the loop's time, without building the trainer. */
async function timeSteps(steps: number, step: () => Promise<unknown>) {
  const cpu = await cpuSeconds();
  const marks = [performance.now()];
  for (let i = 0; i < steps; i++) {
    await step();
    marks.push(performance.now());
  }
  return {
    loop_seconds: (marks.at(-1)! - marks[0]!) / 1000,
    step_seconds: marks.slice(1).map((t, i) => (t - marks[i]!) / 1000),
    cpu_seconds: (await cpuSeconds()) - cpu,
  };
}

/** The bridge's peak RSS (its ru_maxrss) and this Node process's: read after training, before the export. */
async function peakRss() {
  const bridgePeak = (await status()).memory.rss_bytes;
  const nodePeak = process.resourceUsage().maxRSS * 1024;
  return { peak_rss_bytes: bridgePeak + nodePeak, bridge_peak_rss_bytes: bridgePeak, node_peak_rss_bytes: nodePeak };
}

async function save(model: Model, tokenizer: Tokenizer, job: Job): Promise<void> {
  if (job.out_dir) await exportModel(model, tokenizer, job.out_dir);
}

const lora = (spec: { rank: number; alpha: number; dropout: number }) =>
  ({ rank: spec.rank, alpha: spec.alpha, dropout: spec.dropout, targets: "all-linear" }) as const;

async function runGrpo(job: GrpoJob): Promise<Omit<JobResult, "threads">> {
  const tokenizer = await loadTokenizer(job.model_dir);
  let model = await loadModel(job.model_dir);
  if (job.lora) model = await applyLora(model, lora(job.lora));
  const trainer = await grpoTrainer(model, tokenizer, job.train_prompts, {
    algo: job.loss,
    settings: job.algo_settings,
    steps: job.steps,
    lr: job.lr,
    groupSize: job.group_size,
    promptsPerStep: job.prompts_per_step,
    microBatchSize: job.micro_batch_size,
    maxNewTokens: job.max_new_tokens,
    temperature: job.temperature,
    beta: job.beta,
    rewards: { correctness: { fn: correctnessReward(), weight: 1 } },
    correctness: "correctness",
    seed: job.seed,
    display: false,
  });
  const clock = await timeSteps(job.steps, () => trainer.step());
  const peaks = await peakRss();
  const history = trainer.history;
  await save(trainer.model, tokenizer, job);
  return {
    ...clock,
    ...peaks,
    sample_seconds: history.reduce((s, m) => s + m.sampleS, 0),
    sampled_tokens: history.reduce((s, m) => s + m.completionLength * m.groupsDrawn * job.group_size, 0),
    loss: history.map((m) => m.loss),
    reward: history.map((m) => m.reward),
  };
}

async function runSft(job: SftJob): Promise<Omit<JobResult, "threads">> {
  const tokenizer = await loadTokenizer(job.model_dir);
  const model = await loadModel(job.model_dir);
  const trainer = await sftTrainer(
    model,
    tokenizer,
    { train: job.rows },
    {
      steps: job.steps,
      batchSize: job.batch_size,
      lr: job.lr,
      schedule: "constant",
      warmupSteps: job.warmup_steps,
      lora: false,
      seed: job.seed,
      display: false,
    },
  );
  const clock = await timeSteps(job.steps, () => trainer.step());
  const peaks = await peakRss();
  await save(trainer.model, tokenizer, job);
  return { ...clock, ...peaks, loss: trainer.history.map((m) => m.loss) };
}

async function runDpo(job: DpoJob): Promise<Omit<JobResult, "threads">> {
  const tokenizer = await loadTokenizer(job.model_dir);
  const model = await loadModel(job.model_dir);
  const trainer = await dpoTrainer(
    model,
    tokenizer,
    { train: job.rows },
    {
      steps: job.steps,
      batchSize: job.batch_size,
      lr: job.lr,
      beta: job.beta,
      schedule: "constant",
      warmupSteps: job.warmup_steps,
      lora: lora(job.lora),
      seed: job.seed,
      display: false,
    },
  );
  const clock = await timeSteps(job.steps, () => trainer.step());
  const peaks = await peakRss();
  await save(trainer.model, tokenizer, job);
  const history = trainer.history;
  return {
    ...clock,
    ...peaks,
    loss: history.map((m) => m.loss),
    reward_accuracy: history.map((m) => m.rewardAccuracy),
  };
}

const job = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as Job;
// A session of its own: a fresh bridge, so its peak RSS is this job's.
process.env.THINKCELLS_SESSION = `peers-${process.pid}`;
const client = await bridge({ threads: job.threads });
try {
  const result = job.kind === "grpo" ? await runGrpo(job) : job.kind === "sft" ? await runSft(job) : await runDpo(job);
  const threads = (await status()).threads;
  writeFileSync(job.result, JSON.stringify({ ...result, threads } satisfies JobResult));
} finally {
  await client.shutdown().catch(() => {});
}
