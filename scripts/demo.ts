/**
 * `npm run demo [-- --out DIR]`: runs notebooks/03-grpo-arithmetic.ipynb headless (Base → SFT →
 * GRPO on generated arithmetic, CPU) and writes to DIR (default runs/demo/): executed.ipynb,
 * report.html, the exported model in model/ and results.json; then prints the accuracy table and
 * the machine it was measured on.
 */
import { mkdir, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { status } from "../cells-lib/cells/model.ts";
import { disconnect } from "../cells-lib/cells/session.ts";
import { describeFailure, runNotebook } from "../kernel/run.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({ options: { out: { type: "string" } } });
const out = path.resolve(values.out ?? path.join(root, "runs/demo"));
const notebook = path.join(root, "notebooks/03-grpo-arithmetic.ipynb");
await mkdir(out, { recursive: true });

// Its own bridge session (the kernel inherits it), so the demo never replaces the models of a
// notebook using the default session.
process.env.THINKCELLS_SESSION ??= "demo";
// @jupyterlab/services logs each WebSocket connection with console.debug.
console.debug = () => {};
const result = await runNotebook(notebook, {
  parameters: new Map([
    ["outDir", out],
    ["modelDir", path.join(out, "stories260K")],
  ]),
  out: path.join(out, "executed.ipynb"),
  html: path.join(out, "report.html"),
  log: (line) => console.error(line),
});
if (result.failure) {
  console.error(describeFailure(notebook, result.failure));
  console.error(`the executed notebook (with the error) is in ${path.join(out, "executed.ipynb")}`);
  process.exit(1);
}
const r = JSON.parse(await readFile(path.join(out, "results.json"), "utf8")) as Record<string, number>;
// The notebook's bridge (same session) is still up: its torch and BLAS are the ones that trained.
const s = await status();
await disconnect();
const cpus = os.cpus();
const pct = (x: number | undefined) => (x === undefined ? "—" : `${(100 * x).toFixed(1)}%`.padStart(7));
console.log(`
Held-out accuracy on ${r.held_out} generated problems (greedy):

  stage    accuracy   format
  base     ${pct(r.base_accuracy)}
  SFT      ${pct(r.sft_accuracy)}   ${pct(r.sft_format_accuracy)}
  GRPO     ${pct(r.rl_accuracy)}   ${pct(r.rl_format_accuracy)}

Measured on ${cpus.length} × ${cpus[0]?.model}: torch ${s.torch_version} (BLAS: ${s.torch_blas}, ${s.threads} threads;
native decode step: ${s.native_blas ?? "unavailable, plain torch"}). The numbers repeat on the same machine;
another CPU, torch or BLAS rounds differently, training takes another path and they differ.

${(r.wall_s! / 60).toFixed(1)} min in the notebook. Report: ${path.join(out, "report.html")}
Model: ${path.join(out, "model")} (try: node bin/thinkcells.mjs sample ${path.join(out, "model")} --prompt "23+45?" --temperature 0)`);
