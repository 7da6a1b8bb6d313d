/** The jobs the harness hands each side, and running one: every job runs in a fresh process of its own
 * (thinkcells: a Node process and the bridge it starts; TRL: a Python process), so that each peak RSS
 * is that job's. The job file is the one interface between the sides; its fields are snake_case
 * because Python reads it too. */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { findPython } from "../../cells-lib/bridge/client.ts";
import type { LoraSpec, LossType } from "./settings.ts";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");

export type Side = "thinkcells" | "trl";
export const SIDES: readonly Side[] = ["thinkcells", "trl"];

interface JobBase {
  model_dir: string;
  /** Where the trained model is written (a Hugging Face directory), or null to keep nothing. */
  out_dir: string | null;
  /** Scratch space (TRL's output_dir). */
  work_dir: string;
  /** Where the side writes its JobResult. */
  result: string;
  steps: number;
  lr: number;
  warmup_steps: number;
  seed: number;
  threads: number;
}

export interface PromptRow {
  prompt: string;
  reference: string;
}

export interface GrpoJob extends JobBase {
  kind: "grpo";
  /** Every training prompt: thinkcells draws them in its seeded order. */
  train_prompts: PromptRow[];
  /** The prompts thinkcells draws, in its order (steps × prompts per step): TRL takes them unshuffled. */
  prompts: PromptRow[];
  /** Their token ids in thinkcells: TRL's tokenization is checked against them. */
  prompt_ids: number[][];
  group_size: number;
  prompts_per_step: number;
  micro_batch_size: number;
  max_new_tokens: number;
  temperature: number;
  beta: number;
  loss: LossType;
  algo_settings: Record<string, unknown>;
  loss_type: string;
  scale_rewards: string;
  epsilon: number;
  epsilon_high: number;
  overlong: { max_length: number; cache_length: number } | null;
  lora: LoraSpec | null;
}

/** A tokenized SFT example as thinkcells trains it: weight 1 on the tokens the loss predicts. */
export interface TokenizedExample {
  tokens: number[];
  weights: number[];
}

export interface SftJob extends JobBase {
  kind: "sft";
  /** The rows for thinkcells' trainSft, and the same rows as thinkcells tokenized them, for TRL. */
  rows: { prompt: string; completion: string }[];
  examples: TokenizedExample[];
  batch_size: number;
}

export interface DpoJob extends JobBase {
  kind: "dpo";
  rows: { prompt: string; chosen: string; rejected: string }[];
  /** The same pairs as thinkcells tokenizes them (pairs it drops are left out). */
  pairs: { prompt_ids: number[]; chosen_ids: number[]; rejected_ids: number[] }[];
  batch_size: number;
  beta: number;
  lora: LoraSpec;
}

export type Job = GrpoJob | SftJob | DpoJob;

export interface JobResult {
  /** The training loop's wall time: from its first step to the end of its last, without loading or saving. */
  loop_seconds: number;
  step_seconds: number[];
  /** CPU time the side's processes used during the loop (user + system, every thread): less at the mercy of a
   * busy machine than wall time. */
  cpu_seconds: number;
  /** Peak RSS of the side's processes (thinkcells: the bridge's plus the Node process's). */
  peak_rss_bytes: number;
  /** thinkcells' two processes separately. */
  bridge_peak_rss_bytes?: number;
  node_peak_rss_bytes?: number;
  /** GRPO: time producing scored completions and the completion tokens sampled. */
  sample_seconds?: number;
  sampled_tokens?: number;
  loss: (number | null)[];
  reward?: (number | null)[];
  reward_accuracy?: (number | null)[];
  threads: number;
  versions?: Record<string, string>;
}

/** Runs `job` on `side` in a fresh process and returns what it wrote to `job.result`. */
export async function runJob(side: Side, job: Job, jobFile: string): Promise<JobResult> {
  writeFileSync(jobFile, JSON.stringify(job));
  const [program, args] =
    side === "trl"
      ? [findPython(), [path.join(here, "trl_side.py"), jobFile]]
      : [process.execPath, ["--import", "tsx", path.join(here, "thinkcells-side.ts"), jobFile]];
  await new Promise<void>((resolve, reject) => {
    execFile(program, args, { cwd: root, maxBuffer: 64 * 2 ** 20 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${side} ${job.kind} job failed (${jobFile}):\n${stderr.slice(-4000)}`));
      else resolve();
    });
  });
  return JSON.parse(readFileSync(job.result, "utf8")) as JobResult;
}

/** Runs the same work on both sides, one job after the other, numbering the job files in `work`. The side
 * that goes first alternates from one pair to the next, so that neither always gets the machine's fresher
 * (or warmer) minutes. */
export class Runner {
  private jobs = 0;
  private pairs = 0;

  constructor(
    private readonly work: string,
    private readonly log: (line: string) => void,
  ) {}

  async pair(label: string, jobFor: (side: Side) => Job): Promise<Record<Side, JobResult>> {
    const order = this.pairs++ % 2 === 0 ? SIDES : [...SIDES].reverse();
    const results = {} as Record<Side, JobResult>;
    for (const side of order) {
      const n = ++this.jobs;
      const job = { ...jobFor(side), result: path.join(this.work, `job-${n}-result.json`) };
      this.log(`${label}: ${side}…`);
      results[side] = await runJob(side, job, path.join(this.work, `job-${n}.json`));
      this.log(`${label}: ${side} ${(results[side].loop_seconds / job.steps).toFixed(2)} s/step`);
    }
    return results;
  }
}
