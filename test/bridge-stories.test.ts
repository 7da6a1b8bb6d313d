import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import { Tensor } from "../cells-lib/bridge/frames.ts";
import { loadModel, status } from "../cells-lib/cells/model.ts";
import { logprobs, sample } from "../cells-lib/cells/sample.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, llama2cGreedy200, repoRoot, stories, tempDir, testBridge } from "./helpers.ts";

const run = promisify(execFile);
const expected = readFileSync(llama2cGreedy200, "utf8");
const bridge = testBridge("stories");
let client: BridgeClient;
let modelDir: string;

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(tempDir("stories"), client);
});
afterAll(() => bridge.stop());

describe("stories260K through the bridge", () => {
  it("decodes greedily from BOS to exactly llama2.c's reference text", async () => {
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const [completion] = await sample(model, tokenizer, "", { temperature: 0, maxNewTokens: 200 });
    expect(completion!.text).toBe(expected);
    expect(completion!.tokenIds).toHaveLength(200);
    expect(completion!.stopReason).toBe("length");
  });

  it("returns per-token log-probs that match teacher-forced scoring", async () => {
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const [c] = await sample(model, tokenizer, "Once upon a time", { maxNewTokens: 20, seed: 1 });
    const [scored] = await logprobs(model, [[...c!.promptIds, ...c!.tokenIds]]);
    const tail = scored!.slice(c!.promptIds.length - 1);
    tail.forEach((lp, i) => expect(lp).toBeCloseTo(c!.logprobs[i]!, 4));
    expect(c!.logprobs.every((lp) => lp <= 0)).toBe(true);
  });

  it("is reproducible with a seed and varies without", async () => {
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const opts = { n: 4, maxNewTokens: 24, temperature: 1, topP: 0.9, topK: 50, seed: 7 };
    const a = await sample(model, tokenizer, ["Once upon a time", "The cat"], opts);
    const b = await sample(model, tokenizer, ["Once upon a time", "The cat"], opts);
    expect(a.map((c) => c.text)).toEqual(b.map((c) => c.text));
    expect(a.map((c) => [c.promptIndex, c.sampleIndex])).toEqual([
      [0, 0],
      [0, 1],
      [0, 2],
      [0, 3],
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
    ]);
    expect(new Set(a.map((c) => c.text)).size).toBeGreaterThan(1);
  });

  it("prefills each prompt once for all its samples: P·L prefill tokens, not P·G·L", async () => {
    const model = await loadModel(modelDir, { client });
    const [P, G, L] = [3, 8, 5];
    const prompts = Array.from({ length: P }, (_, p) => Array.from({ length: L }, (_, i) => 10 + 7 * p + i));
    const request = (share: boolean) => ({
      model: model.name,
      prompt_ids: Tensor.int32(prompts.flat()),
      prompt_lengths: Tensor.int32(prompts.map((p) => p.length)),
      n: G,
      max_new_tokens: 4,
      temperature: 1,
      top_p: 1,
      top_k: 0,
      stop_token_ids: [],
      seed: 3,
      // Without a cache nothing is shared: every row runs its prompt.
      use_cache: share,
      entropy: false,
    });
    const before = (await status(client)).prefill_tokens;
    const shared = await client.call("sample", request(true));
    expect(shared.prefill_tokens).toBe(P * L);
    expect((await status(client)).prefill_tokens).toBe(before + P * L);
    const unshared = await client.call("sample", request(false));
    expect(unshared.prefill_tokens).toBe(P * G * L);
    expect(shared.tokens.data).toEqual(unshared.tokens.data);
  });

  it("stops at stop strings and stop token ids", async () => {
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const [byString] = await sample(model, tokenizer, "", {
      temperature: 0,
      maxNewTokens: 200,
      stopStrings: ["Lily."],
    });
    expect(byString!.text).toBe("Once upon a time, there was a little girl named ");
    expect(byString!.stopReason).toBe("stop_string");
    expect(tokenizer.decode(byString!.tokenIds)).toBe("Once upon a time, there was a little girl named Lily.");
    const dotId = tokenizer.encode(".")[0]!;
    const [byToken] = await sample(model, tokenizer, "", { temperature: 0, maxNewTokens: 200, stopTokenIds: [dotId] });
    expect(byToken!.stopReason).toBe("stop_token");
    expect(byToken!.tokenIds.at(-1)).toBe(dotId);
  });

  it("reports device, dtype, memory and parameter counts", async () => {
    await loadModel(modelDir, { client, name: "stories" });
    const s = await status(client);
    expect(s.device).toBe("cpu");
    const info = s.models.find((m) => m.name === "stories")!;
    expect(info.dtype).toBe("float32");
    expect(info.parameters).toBe(260032); // stories260K: 64·512 + 5 layers + final norm
    expect(s.memory.rss_bytes).toBeGreaterThan(10_000_000);
  });

  it("converts, samples, reports and stops through the thinkcells CLI", async () => {
    // Its own session: `bridge stop` below must not take the other tests' bridge with it.
    const env = { ...process.env, THINKCELLS_BRIDGE_DIR: bridge.dir, THINKCELLS_SESSION: "cli" };
    const cliDir = path.join(tempDir("cli"), "model");
    const cli = path.join(repoRoot, "bin/thinkcells.mjs");
    await run(
      "node",
      [cli, "convert", "llama2c", path.join(stories, "stories260K.bin"), path.join(stories, "tok512.bin"), cliDir],
      { env },
    );
    const { stdout } = await run("node", [cli, "sample", cliDir, "--max-new-tokens", "200", "--temperature", "0"], {
      env,
    });
    expect(stdout).toBe(`${expected}\n`);
    const bad = await run("node", [cli, "sample", cliDir, "--temperature=-1"], { env }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr).toMatch(/option "temperature": must be ≥ 0/);
    const status = JSON.parse((await run("node", [cli, "status"], { env })).stdout);
    expect(status.models.map((m: { name: string }) => m.name)).toEqual(["cli"]);
    expect(status.device).toBe("cpu");
    await run("node", [cli, "bridge", "stop"], { env });
    expect(existsSync(path.join(bridge.dir, "cli.json"))).toBe(false);
    const usage = await run("node", [cli, "frobnicate"], { env }).catch((e: { code: number; stderr: string }) => e);
    expect((usage as { code: number }).code).toBe(2);
    expect((usage as { stderr: string }).stderr).toMatch(/unknown command "frobnicate"[\s\S]*usage:/);
  });
});

describe("completion text", () => {
  it("keeps the space a continuation starts with", async () => {
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const prompt = "Once upon a time, there was a little girl";
    const [c] = await sample(model, tokenizer, prompt, { temperature: 0, maxNewTokens: 5 });
    expect(c!.text).toBe(" named Lily. She lo");
    expect(prompt + c!.text).toBe(expected.slice(0, prompt.length + c!.text.length));
  });
});
