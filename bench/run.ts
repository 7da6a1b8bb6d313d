/**
 * Benchmarks (`npm run bench`): prints a table and writes bench/results.json. Nothing here is
 * asserted: these machines are shared and noisy, so targets are reported, not enforced.
 */

import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { BridgeClient, bridgePackageDir, findPython } from "../cells-lib/bridge/client.ts";
import { Tensor } from "../cells-lib/bridge/frames.ts";
import { convertLlama2c } from "../cells-lib/cells/convert.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { applyLora, forwardBackward, optimStep, type TrainingExample } from "../cells-lib/cells/train.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const work = path.join(os.tmpdir(), `thinkcells-bench-${process.pid}`);

interface Result {
  name: string;
  value: number;
  unit: string;
  target?: string;
  met?: boolean;
  note: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timeIt(repeats: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

const bridgeDir = path.join(work, "bridge");
const python = findPython();
const pyEnv = { ...process.env, PYTHONPATH: bridgePackageDir };

/** Random token batches: SFT speed does not depend on the values. */
function randomBatch(vocab: number, batch: number, seqLen: number, seed: number): TrainingExample[] {
  let x = seed * 2654435761 + 1;
  const next = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return 3 + (x % (vocab - 3));
  };
  return Array.from({ length: batch }, () => ({ tokens: Array.from({ length: seqLen }, next) }));
}

async function sftTokensPerS(model: Model, batch: number, seqLen: number, steps: number): Promise<number> {
  const step = async (s: number) => {
    await forwardBackward(model, randomBatch(model.info.vocab_size, batch, seqLen, s), { kind: "cross_entropy" });
    await optimStep(model, { lr: 1e-4 });
  };
  await step(0); // warm-up
  const start = performance.now();
  for (let s = 1; s <= steps; s++) await step(s);
  return (batch * (seqLen - 1) * steps) / ((performance.now() - start) / 1000);
}

function sftPlainTokensPerS(modelDir: string, batch: number, seqLen: number, steps: number, lora?: number): number {
  const args = [
    path.join(root, "bench/sft_plain.py"),
    modelDir,
    String(batch),
    String(seqLen),
    String(steps),
    ...(lora ? ["lora", String(lora)] : []),
  ];
  return (JSON.parse(execFileSync(python, args, { env: pyEnv, encoding: "utf8" })) as { tokens_per_s: number })
    .tokens_per_s;
}

/** Peak RSS of a fresh bridge that loads the model and trains a few steps in one setting. */
async function peakTrainingMemory(
  modelDir: string,
  session: string,
  quantize: "int8" | "nf4" | undefined,
  setup: (m: Model) => Promise<Model>,
): Promise<number> {
  const c = await BridgeClient.connect({ session, dir: bridgeDir });
  try {
    const model = await setup(await loadModel(modelDir, { client: c, quantize }));
    await sftTokensPerS(model, 8, 128, 2);
    return (await c.call("status", {})).memory.rss_bytes;
  } finally {
    await c.shutdown();
  }
}

const client = await BridgeClient.connect({ session: "bench", dir: bridgeDir });
try {
  const modelDir = path.join(work, "stories260K");
  await convertLlama2c(
    path.join(root, "assets/stories260K/stories260K.bin"),
    path.join(root, "assets/stories260K/tok512.bin"),
    modelDir,
    client,
  );
  const model = await loadModel(modelDir, { client });
  const tokenizer = await loadTokenizer(modelDir);
  const results: Result[] = [];

  // 64 sequences × 256 new tokens from BOS; no stop tokens, so every row runs to the end.
  const work64 = (useCache: boolean) =>
    sample(model, tokenizer, "", { n: 64, maxNewTokens: 256, temperature: 1, seed: 0, stopTokenIds: [], useCache });
  await sample(model, tokenizer, "", { n: 64, maxNewTokens: 16, stopTokenIds: [] }); // warm-up: native kernel build, allocator
  const cached = median(await timeIt(3, () => work64(true)));
  const sampleTps = (64 * 256) / (cached / 1000);
  results.push({
    name: "sample_tokens_per_s",
    value: sampleTps,
    unit: "tokens/s",
    target: "≥ 18000",
    met: sampleTps >= 18000,
    note: "stories260K, 64 seqs × 256 new tokens, KV cache, aggregate",
  });
  const uncached = median(await timeIt(1, () => work64(false)));
  results.push({
    name: "sample_nocache_tokens_per_s",
    value: (64 * 256) / (uncached / 1000),
    unit: "tokens/s",
    note: "same work, prefix recomputed every step",
  });

  // The native step's BLAS (torch's own, PyPI's OpenBLAS) and the plain torch path, in one process.
  const blas = JSON.parse(
    execFileSync(python, [path.join(root, "bench/native_blas.py"), modelDir], { env: pyEnv, encoding: "utf8" }),
  ) as Record<string, number>;
  for (const [label, tps] of Object.entries(blas)) {
    const key =
      label === "plain torch" ? "plain_torch" : `native_${label.toLowerCase().replace("'s", "").replace(/\W+/g, "_")}`;
    results.push({
      name: `sample_tokens_per_s.${key}`,
      value: tps,
      unit: "tokens/s",
      note: `the same sampling in one plain Python process, decode step: ${label === "plain torch" ? "plain torch" : `native, matmuls in ${label}`}`,
    });
  }

  // The C step against torch's fixed-shape step by model width: where the C step is used (native_kernels.NATIVE_MAX_HIDDEN).
  const widths = JSON.parse(
    execFileSync(python, [path.join(root, "bench/decode_widths.py")], { env: pyEnv, encoding: "utf8" }),
  ) as { hidden: number; rows: number; native: number; static: number }[];
  for (const w of widths) {
    results.push({
      name: `decode_native_over_static.hidden_${w.hidden}.rows_${w.rows}`,
      value: w.native / w.static,
      unit: "×",
      note: `random Llama shape, 8 layers, LoRA r8: C step ${w.native.toFixed(0)} vs torch's static step ${w.static.toFixed(0)} tokens/s`,
    });
  }

  const noop = median(await timeIt(500, () => client.call("ping", {})));
  results.push({
    name: "rpc_noop_ms",
    value: noop,
    unit: "ms",
    target: "< 1",
    met: noop < 1,
    note: "median round trip of a no-op call",
  });

  const ids = new Tensor(
    "int32",
    [64, 512],
    Int32Array.from({ length: 64 * 512 }, (_, i) => i % 512),
  );
  const lps = new Tensor(
    "float32",
    [64, 512],
    Float32Array.from({ length: 64 * 512 }, (_, i) => -i / 1e4),
  );
  const batch = median(await timeIt(100, () => client.call("echo", { tensors: { ids, logprobs: lps } })));
  results.push({
    name: "rpc_batch_ms",
    value: batch,
    unit: "ms",
    target: "< 10",
    met: batch < 10,
    note: "64×512 token ids + float32 logprobs, there and back",
  });

  // SFT through the cells vs the same loop in plain PyTorch, full fine-tuning.
  const qwenDir = path.join(work, "qwen2-20m");
  execFileSync(python, [path.join(root, "scripts/make_random_qwen2.py"), qwenDir, "20m"], { env: pyEnv });
  const qwen = await loadModel(qwenDir, { client, name: "qwen2-20m" });
  const sftRuns = [
    { name: "stories260K", model, dir: modelDir, batch: 32, seqLen: 64, steps: 10 },
    { name: "qwen2_20m", model: qwen, dir: qwenDir, batch: 8, seqLen: 128, steps: 3 },
  ];
  for (const run of sftRuns) {
    // Alternated and best of three: the machine's speed drifts by tens of percent.
    let cells = 0;
    let plain = 0;
    for (let rep = 0; rep < 3; rep++) {
      cells = Math.max(cells, await sftTokensPerS(run.model, run.batch, run.seqLen, run.steps));
      plain = Math.max(plain, sftPlainTokensPerS(run.dir, run.batch, run.seqLen, run.steps));
    }
    const shape = `${run.name} (${(run.model.info.parameters / 1e6).toFixed(1)}M), full fine-tuning, ${run.batch}×${run.seqLen} tokens`;
    results.push({
      name: `sft_tokens_per_s.${run.name}`,
      value: cells,
      unit: "tokens/s",
      note: `through the cells: ${shape}`,
    });
    results.push({
      name: `sft_plain_tokens_per_s.${run.name}`,
      value: plain,
      unit: "tokens/s",
      note: `plain PyTorch loop, one process: ${shape}`,
    });
    results.push({
      name: `sft_cells_vs_plain.${run.name}`,
      value: cells / plain,
      unit: "ratio",
      target: "≥ 0.95",
      met: cells / plain >= 0.95,
      note: "cells ÷ plain",
    });
  }
  await client.call("unload_model", { name: "qwen2-20m" });

  // Peak memory of training the 20M model, each setting in a fresh bridge.
  const lora = (m: Model) => applyLora(m, { rank: 16, dropout: 0 });
  const memory = [
    { name: "full", quantize: undefined, setup: async (m: Model) => m },
    { name: "lora", quantize: undefined, setup: lora },
    { name: "int8_lora", quantize: "int8" as const, setup: lora },
    { name: "nf4_lora", quantize: "nf4" as const, setup: lora },
  ];
  for (const m of memory) {
    const bytes = await peakTrainingMemory(qwenDir, `bench-mem-${m.name}`, m.quantize, m.setup);
    results.push({
      name: `train_peak_rss_mib.${m.name}`,
      value: bytes / 2 ** 20,
      unit: "MiB",
      note: `qwen2_20m, ${m.name}, peak RSS of a fresh bridge (includes ~200 MiB of torch)`,
    });
  }

  // Real shapes (Qwen2.5-0.5B, Gemma-3-1B on random weights) beside transformers: each case in a
  // process of its own for its own peak RSS (bench/real_shapes.py; ~20 min on 2 cores).
  console.error("bench: real shapes (Qwen2.5-0.5B and Gemma-3-1B sized, random weights)...");
  const realShapes = execFileSync(python, [path.join(root, "bench/real_shapes.py")], {
    env: pyEnv,
    encoding: "utf8",
    maxBuffer: 2 ** 26,
  });
  results.push(...(JSON.parse(realShapes) as Result[]));

  const status = await client.call("status", {});
  const table = results.map((r) => ({
    name: r.name,
    value: Number(r.value.toFixed(r.unit === "ms" || r.unit === "ratio" ? 3 : 0)),
    unit: r.unit,
    target: r.target ?? "",
    met: r.met === undefined ? "" : r.met ? "yes" : "NO",
  }));
  console.log(
    `torch ${status.torch_version} (BLAS: ${status.torch_blas}); ` +
      `native decode step: ${status.native_blas ?? "unavailable (plain torch)"}; ` +
      `${status.threads} torch thread(s), ${os.cpus().length} cores (${os.cpus()[0]?.model})`,
  );
  console.table(table);
  const report = {
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model,
      memory_gib: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
    },
    bridge: {
      device: status.device,
      torch: status.torch_version,
      torch_blas: status.torch_blas,
      native_blas: status.native_blas,
      threads: status.threads,
    },
    results: Object.fromEntries(results.map((r) => [r.name, r])),
  };
  writeFileSync(path.join(root, "bench/results.json"), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${path.join(root, "bench/results.json")}`);
} finally {
  await client.shutdown().catch(() => {});
}
