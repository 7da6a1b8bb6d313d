/** Sampling stops where the model does: a converted llama2.c model at the BOS that starts the next
 * story, as llama2.c's run.c does; any model at its generation_config.json's eos_token_id.
 *
 * test/fixtures/llama2c-stories260K-greedy-512.txt is what llama2.c's reference C implementation
 * printed for stories260K (karpathy/llama2.c run.c at 350e04fe35433e6d2941dce5a1f53308f87058eb,
 * `gcc -O2 -o run run.c -lm && ./run stories260K.bin -z tok512.bin -t 0 -n 512`, the final newline
 * run.c adds left out): 345 tokens, then run.c sampled BOS and stopped. Its first 200 tokens are
 * test/fixtures/llama2c-stories260K-greedy-200.txt. */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import type { ModelInfo } from "../cells-lib/bridge/protocol.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { modelStopTokenIds, sample } from "../cells-lib/cells/sample.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { llama2cGreedy200, repoRoot, stories, tempDir, testBridge } from "./helpers.ts";

const llama2c = readFileSync(path.join(repoRoot, "test/fixtures/llama2c-stories260K-greedy-512.txt"), "utf8");

const BOS = 1;
const EOS = 2;

function thinkcells(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(repoRoot, "bin/thinkcells.mjs"), ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("the llama2.c reference", () => {
  it("its 512-step output begins with its 200-step output", () => {
    expect(llama2c.startsWith(readFileSync(llama2cGreedy200, "utf8"))).toBe(true);
  });
});

describe("a converted llama2.c model", () => {
  const bridge = testBridge("stop-tokens");
  const env = () => ({ THINKCELLS_BRIDGE_DIR: bridge.dir, THINKCELLS_SESSION: bridge.session });
  const modelDir = path.join(tempDir("stop-tokens"), "stories260K");
  let client: BridgeClient;
  beforeAll(async () => {
    client = await bridge.connect();
    const converted = await thinkcells(
      ["convert", "llama2c", path.join(stories, "stories260K.bin"), path.join(stories, "tok512.bin"), modelDir],
      env(),
    );
    expect(converted.code, converted.stderr).toBe(0);
  }, 60_000);
  afterAll(() => bridge.stop());

  it("has a generation config that stops at EOS and at BOS", () => {
    expect(JSON.parse(readFileSync(path.join(modelDir, "generation_config.json"), "utf8"))).toEqual({
      bos_token_id: BOS,
      eos_token_id: [EOS, BOS],
    });
    expect(JSON.parse(readFileSync(path.join(modelDir, "config.json"), "utf8"))).toMatchObject({
      bos_token_id: BOS,
      eos_token_id: EOS,
    });
  });

  it("`thinkcells sample` greedy stops where llama2.c stops", async () => {
    const { code, stdout, stderr } = await thinkcells(
      ["sample", modelDir, "--temperature", "0", "--max-new-tokens", "511"],
      env(),
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toBe(`${llama2c}\n`);
  }, 60_000);

  it("sample() ends at the BOS token; without the model's stop tokens it runs on into the next story", async () => {
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const [stopped] = await sample(model, tokenizer, "", { temperature: 0, maxNewTokens: 511 });
    expect(stopped).toMatchObject({ text: llama2c, stopReason: "stop_token" });
    expect(stopped!.tokenIds).toHaveLength(346);
    expect(stopped!.tokenIds.at(-1)).toBe(BOS);
    const [runOn] = await sample(model, tokenizer, "", {
      temperature: 0,
      maxNewTokens: 511,
      stopTokenIds: model.info.eos_token_ids,
    });
    expect(model.info.eos_token_ids).toEqual([EOS]); // config.json's
    expect(runOn!.stopReason).toBe("length");
    expect(runOn!.tokenIds.slice(0, 346)).toEqual(stopped!.tokenIds);
    expect(runOn!.text.length).toBeGreaterThan(llama2c.length);
  }, 60_000);
});

describe("modelStopTokenIds", () => {
  /** A model as sample() sees it, loaded from `dir` with config.json's eos_token_id 2. */
  function modelIn(generationConfig?: string): Model {
    const dir = tempDir("stop-ids");
    if (generationConfig !== undefined) writeFileSync(path.join(dir, "generation_config.json"), generationConfig);
    return {
      name: "m",
      info: { path: dir, eos_token_ids: [EOS] } as ModelInfo,
      client: undefined as unknown as BridgeClient,
    };
  }

  it("reads generation_config.json's eos_token_id, one id or a list, else config.json's", async () => {
    expect(await modelStopTokenIds(modelIn('{"eos_token_id": [128001, 128008, 128009]}'))).toEqual([
      128001, 128008, 128009,
    ]);
    expect(await modelStopTokenIds(modelIn('{"eos_token_id": 151645, "temperature": 0.7}'))).toEqual([151645]);
    expect(await modelStopTokenIds(modelIn('{"eos_token_id": null}'))).toEqual([EOS]);
    expect(await modelStopTokenIds(modelIn('{"do_sample": true}'))).toEqual([EOS]);
    expect(await modelStopTokenIds(modelIn())).toEqual([EOS]);
  });

  it("names the file and what it expected when the generation config is unusable", async () => {
    for (const [text, message] of [
      [
        '{"eos_token_id": "</s>"}',
        /generation_config\.json: eos_token_id is "<\/s>"; expected a token id or a list of token ids$/,
      ],
      [
        '{"eos_token_id": [2, -1]}',
        /generation_config\.json: eos_token_id is \[2,-1\]; expected a token id or a list of token ids$/,
      ],
      ["[2]", /generation_config\.json is not a JSON object$/],
      ["{eos", /generation_config\.json is not valid JSON \(/],
    ] as const) {
      const model = modelIn(text);
      await expect(modelStopTokenIds(model)).rejects.toThrow(message);
      await expect(modelStopTokenIds(model)).rejects.toThrow(
        `sample: ${path.join(model.info.path, "generation_config.json")}`,
      );
    }
  });
});
