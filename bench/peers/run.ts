/**
 * `npm run bench:peers [-- --smoke] [-- --out FILE] [-- --settings JSON]`: thinkcells beside TRL on the same work,
 * in one run, on the CPU. Both sides start from the same models (stories260K, and the SFT checkpoint thinkcells
 * trains as the demo does, exported as a Hugging Face directory), take the same data, batch, group size, max new
 * tokens, learning rate, steps and reward, and alternate their turns against the machine's drift. Each job runs
 * in a fresh process (bench/peers/thinkcells-side.ts, bench/peers/trl_side.py); both sides' models are then
 * scored by the same thinkcells code on the same held-out data. Prints a table and writes bench/peers.json
 * (--out FILE elsewhere); nothing is asserted on time.
 *
 * --smoke: every row at tiny sizes, 2 steps (test/bench-peers.test.ts runs it).
 * --settings JSON: overrides of the settings (bench/peers/settings.ts), e.g. '{"grpo": {"seeds": [1]}}'.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BridgeClient } from "../../cells-lib/bridge/client.ts";
import { convertLlama2c, loadTokenizer } from "../../cells-lib/index.ts";
import { type Context, compareDpo, compareGrpo, compareQwen, compareSft } from "./compare.ts";
import { arithmeticData } from "./data.ts";
import { Runner } from "./jobs.ts";
import { Evaluator } from "./measure.ts";
import { markdownTable } from "./report.ts";
import { fullSettings, type Settings, smokeSettings, withOverrides } from "./settings.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const { values: args } = parseArgs({
  options: { smoke: { type: "boolean", default: false }, out: { type: "string" }, settings: { type: "string" } },
});
const preset = args.smoke ? smokeSettings() : fullSettings(os.cpus().length);
const settings: Settings = args.settings ? withOverrides(preset, JSON.parse(args.settings)) : preset;
const work = mkdtempSync(path.join(os.tmpdir(), "thinkcells-peers-"));
const out = path.resolve(
  args.out ?? (args.smoke ? path.join(work, "peers.json") : path.join(root, "bench/peers.json")),
);
const started = performance.now();
const log = (line: string) =>
  console.error(`[${((performance.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`);

// The orchestrator's own bridge converts the base model and scores every trained model.
const client = await BridgeClient.connect({
  session: `peers-eval-${process.pid}`,
  dir: path.join(work, "bridge"),
  threads: settings.threads,
});
try {
  const baseDir = path.join(work, "stories260K");
  const assets = path.join(root, "assets/stories260K");
  await convertLlama2c(path.join(assets, "stories260K.bin"), path.join(assets, "tok512.bin"), baseDir, client);
  const tokenizer = await loadTokenizer(baseDir);
  const ctx: Context = {
    settings,
    work,
    runner: new Runner(work, log),
    evaluator: new Evaluator(client, tokenizer),
    tokenizer,
    data: arithmeticData(settings.data),
    log,
  };
  const sft = await compareSft(ctx, baseDir);
  const grpo = await compareGrpo(ctx, sft.checkpoint, sft.start.accuracy);
  const dpo = await compareDpo(ctx, sft.checkpoint);
  const qwen = await compareQwen(ctx);
  const rows = [...sft.rows, ...grpo.rows, ...dpo.rows, ...qwen.rows];

  const bridgeStatus = await client.call("status", {});
  const peer = sft.runs.trl.versions ?? {};
  const cpus = os.cpus();
  const report = {
    date: new Date().toISOString(),
    smoke: args.smoke,
    wall_s: (performance.now() - started) / 1000,
    machine: {
      cpus: cpus.length,
      cpu: cpus[0]?.model,
      memory_gib: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
    },
    versions: {
      trl: peer.trl,
      transformers: peer.transformers,
      torch: peer.torch,
      thinkcells_torch: bridgeStatus.torch_version,
      torch_blas: bridgeStatus.torch_blas,
    },
    threads: { thinkcells: sft.runs.thinkcells.threads, trl: sft.runs.trl.threads },
    settings,
    sft_checkpoint: sft.start,
    rows,
    runs: { sft: sft.runs, grpo: grpo.runs, dpo: dpo.runs, qwen: qwen.runs },
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  const v = report.versions;
  console.log(
    `thinkcells beside TRL ${v.trl} (transformers ${v.transformers}, torch ${v.torch}), ${settings.threads} torch thread(s) ` +
      `each, ${cpus.length} × ${cpus[0]?.model}${args.smoke ? " — SMOKE settings" : ""}\n`,
  );
  console.log(markdownTable(rows));
  console.log(`\nsettings: ${JSON.stringify(settings)}`);
  console.log(`${(report.wall_s / 60).toFixed(1)} min; wrote ${out}`);
} finally {
  await client.shutdown().catch(() => {});
  // The work directory holds every trained model (the Qwen-shaped one is 2 GB); a smoke run without --out keeps
  // its report there.
  if (!args.smoke || args.out) rmSync(work, { recursive: true, force: true });
}
