/**
 * `npm run demo`: converts the shipped stories260K llama2.c model to a Hugging Face directory
 * and samples from it through the bridge. (The walkthrough notebooks will take this over.)
 */
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { convertLlama2c } from "../cells-lib/cells/convert.ts";
import { loadModel, status } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const outDir = path.resolve(process.argv[2] ?? path.join(root, "runs/demo/stories260K"));
const assets = path.join(root, "assets/stories260K");

const started = performance.now();
const client = await BridgeClient.connect({ session: "demo" });
try {
  console.log(`bridge: pid ${client.hello.pid}, ${client.hello.device}, torch ${client.hello.torch_version}`);
  await convertLlama2c(path.join(assets, "stories260K.bin"), path.join(assets, "tok512.bin"), outDir, client);
  console.log(`converted stories260K → ${outDir}`);

  const model = await loadModel(outDir, { client });
  const tokenizer = await loadTokenizer(outDir);
  const { parameters } = model.info;
  console.log(`loaded: ${model.info.model_type}, ${parameters.toLocaleString("en")} parameters, ${model.info.dtype} on ${model.info.device}\n`);

  const [greedy] = await sample(model, tokenizer, "", { temperature: 0, maxNewTokens: 64 });
  console.log(`greedy from BOS:\n  ${greedy!.text.replaceAll("\n", "\n  ")}\n`);

  const stories = await sample(model, tokenizer, "Once upon a time, a little robot", { n: 3, maxNewTokens: 60, temperature: 0.8, topP: 0.95, seed: 42 });
  for (const s of stories) {
    const meanLogprob = s.logprobs.reduce((a, b) => a + b, 0) / s.logprobs.length;
    console.log(`sample ${s.sampleIndex} (${s.tokenIds.length} tokens, mean log-prob ${meanLogprob.toFixed(2)}, ${s.stopReason}):`);
    console.log(`  Once upon a time, a little robot${s.text.replaceAll("\n", "\n  ")}\n`);
  }
  const st = await status(client);
  console.log(`bridge memory: ${(st.memory.rss_bytes / 2 ** 20).toFixed(0)} MiB peak RSS; native kernels: ${st.native_kernels ? "on" : "off"}`);
  console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await client.shutdown().catch(() => {});
}
