/**
 * Benchmarks (`npm run bench`): prints a table and writes bench/results.json. Nothing here is
 * asserted: these machines are shared and noisy, so targets are reported, not enforced.
 */
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { Tensor } from "../cells-lib/bridge/frames.ts";
import { convertLlama2c } from "../cells-lib/cells/convert.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
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

const client = await BridgeClient.connect({ session: "bench", dir: path.join(work, "bridge") });
try {
  const modelDir = path.join(work, "stories260K");
  await convertLlama2c(path.join(root, "assets/stories260K/stories260K.bin"), path.join(root, "assets/stories260K/tok512.bin"), modelDir, client);
  const model = await loadModel(modelDir, { client });
  const tokenizer = await loadTokenizer(modelDir);
  const results: Result[] = [];

  // 64 sequences × 256 new tokens from BOS; no stop tokens, so every row runs to the end.
  const work64 = (useCache: boolean) => sample(model, tokenizer, "", { n: 64, maxNewTokens: 256, temperature: 1, seed: 0, stopTokenIds: [], useCache });
  await sample(model, tokenizer, "", { n: 64, maxNewTokens: 16, stopTokenIds: [] }); // warm-up: native kernel build, allocator
  const cached = median(await timeIt(3, () => work64(true)));
  const sampleTps = (64 * 256) / (cached / 1000);
  results.push({ name: "sample_tokens_per_s", value: sampleTps, unit: "tokens/s", target: "≥ 18000", met: sampleTps >= 18000, note: "stories260K, 64 seqs × 256 new tokens, KV cache, aggregate" });
  const uncached = median(await timeIt(1, () => work64(false)));
  results.push({ name: "sample_nocache_tokens_per_s", value: (64 * 256) / (uncached / 1000), unit: "tokens/s", note: "same work, prefix recomputed every step" });

  const noop = median(await timeIt(500, () => client.call("ping", {})));
  results.push({ name: "rpc_noop_ms", value: noop, unit: "ms", target: "< 1", met: noop < 1, note: "median round trip of a no-op call" });

  const ids = new Tensor("int32", [64, 512], Int32Array.from({ length: 64 * 512 }, (_, i) => i % 512));
  const lps = new Tensor("float32", [64, 512], Float32Array.from({ length: 64 * 512 }, (_, i) => -i / 1e4));
  const batch = median(await timeIt(100, () => client.call("echo", { tensors: { ids, logprobs: lps } })));
  results.push({ name: "rpc_batch_ms", value: batch, unit: "ms", target: "< 10", met: batch < 10, note: "64×512 token ids + float32 logprobs, there and back" });

  const status = await client.call("status", {});
  const table = results.map((r) => ({ name: r.name, value: Number(r.value.toFixed(r.unit === "ms" ? 3 : 0)), unit: r.unit, target: r.target ?? "", met: r.met === undefined ? "" : r.met ? "yes" : "NO" }));
  console.table(table);
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    bridge: { device: status.device, torch: status.torch_version, threads: status.threads, native_kernels: status.native_kernels },
    results: Object.fromEntries(results.map((r) => [r.name, r])),
  };
  writeFileSync(path.join(root, "bench/results.json"), JSON.stringify(report, null, 2) + "\n");
  console.log(`wrote ${path.join(root, "bench/results.json")}`);
} finally {
  await client.shutdown().catch(() => {});
}
