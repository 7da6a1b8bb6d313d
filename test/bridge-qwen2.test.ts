import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BridgeClient, bridgePackageDir, findPython } from "../cells-lib/bridge/client.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { logprobs, sample } from "../cells-lib/cells/sample.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { repoRoot, sharedPath, tempDir, testBridge } from "./helpers.ts";

const run = promisify(execFile);
const qwenTokenizer = sharedPath("fixtures/qwen2_tokenizer", "sampling with the real Qwen2 tokenizer");
const bridge = testBridge("qwen2");
const root = tempDir("qwen2");
const modelDir = path.join(root, "tiny-qwen2");
let client: BridgeClient;

beforeAll(async () => {
  await run(findPython(), [path.join(repoRoot, "scripts/make_random_qwen2.py"), modelDir, "tiny"], {
    env: { ...process.env, PYTHONPATH: bridgePackageDir },
  });
  client = await bridge.connect();
});
afterAll(() => bridge.stop());

describe("a tiny random Qwen2-shaped checkpoint (q/k/v bias, untied embeddings, two shards)", () => {
  it("is sharded as the test intends", () => {
    const files = readdirSync(modelDir).sort();
    expect(files).toEqual([
      "config.json",
      "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors",
      "model.safetensors.index.json",
    ]);
  });

  it("loads as a native qwen2", async () => {
    const model = await loadModel(modelDir, { client, name: "qwen" });
    expect(model.info).toMatchObject({
      backend: "native",
      model_type: "qwen2",
      tie_word_embeddings: false,
      vocab_size: 151646,
      eos_token_ids: [151645],
    });
  });

  it.skipIf(!qwenTokenizer)("samples with the real Qwen2 tokenizer and its chat template", async () => {
    const model = await loadModel(modelDir, { client, name: "qwen" });
    expect(model.info).toMatchObject({
      model_type: "qwen2",
      tie_word_embeddings: false,
      vocab_size: 151646,
      eos_token_ids: [151645],
    });
    const tokenizer = await loadTokenizer(qwenTokenizer!);
    const prompt = tokenizer.applyChatTemplate([{ role: "user", content: "What is 2+3?" }], {
      addGenerationPrompt: true,
    });
    const out = await sample(model, tokenizer, [prompt, "hello"], { n: 3, maxNewTokens: 12, seed: 11 });
    expect(out).toHaveLength(6);
    for (const c of out) {
      expect(c.tokenIds.length).toBeGreaterThan(0);
      expect(c.tokenIds.length).toBeLessThanOrEqual(12);
      expect(c.tokenIds.every((t) => t >= 0 && t < 151646)).toBe(true);
      expect(c.logprobs.every((lp) => Number.isFinite(lp) && lp <= 0)).toBe(true);
    }
    // Left-padding in a batch must not change what a prompt produces.
    const alone = await sample(model, tokenizer, ["hello"], { temperature: 0, maxNewTokens: 8 });
    const batched = await sample(model, tokenizer, [prompt, "hello"], { temperature: 0, maxNewTokens: 8 });
    expect(batched[1]!.tokenIds).toEqual(alone[0]!.tokenIds);
    const [scored] = await logprobs(model, [[...alone[0]!.promptIds, ...alone[0]!.tokenIds]]);
    scored!.slice(alone[0]!.promptIds.length - 1).forEach((lp, i) => expect(lp).toBeCloseTo(alone[0]!.logprobs[i]!, 4));
  });

  it("round-trips through the project's safetensors writer bit for bit", async () => {
    const out = path.join(root, "saved");
    const index = JSON.parse(readFileSync(path.join(modelDir, "model.safetensors.index.json"), "utf8"));
    const total: number = index.metadata.total_size;
    const { files } = await client.call("save_model", {
      name: "qwen",
      out_dir: out,
      max_shard_bytes: Math.floor(total * 0.6),
    });
    expect(files).toEqual(readdirSync(modelDir).sort());
    for (const f of files.filter((f) => f.endsWith(".safetensors"))) {
      expect(readFileSync(path.join(out, f)).equals(readFileSync(path.join(modelDir, f)))).toBe(true);
    }
    expect(JSON.parse(readFileSync(path.join(out, "model.safetensors.index.json"), "utf8"))).toEqual(index);
  });
});
