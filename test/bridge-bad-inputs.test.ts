import { closeSync, copyFileSync, cpSync, openSync, writeSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import { BridgeError } from "../cells-lib/bridge/errors.ts";
import { Tensor } from "../cells-lib/bridge/frames.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { convertStories, tempDir, testBridge } from "./helpers.ts";

const bridge = testBridge("badinput");
const root = tempDir("badinput");
let client: BridgeClient;
let modelDir: string;
let model: Model;
let tokenizer: Tokenizer;

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  model = await loadModel(modelDir, { client });
  tokenizer = await loadTokenizer(modelDir);
});
afterAll(() => bridge.stop());

/** After every bad input the bridge must still serve the model. */
async function stillUsable(): Promise<void> {
  const [c] = await sample(model, tokenizer, "", { temperature: 0, maxNewTokens: 8 });
  expect(c!.text).toBe("Once upon a time, there was a");
}

async function failure(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

describe("bad inputs give clear errors and leave the bridge usable", () => {
  it("a wrong model path", async () => {
    const err = await failure(loadModel(path.join(root, "no-such-model"), { client, name: "x" }));
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).kind).toBe("bad_input");
    expect(err.message).toMatch(/no-such-model: no such model directory/);
    await stillUsable();
  });

  it("a corrupt safetensors header", async () => {
    const broken = path.join(root, "corrupt");
    cpSync(modelDir, broken, { recursive: true });
    const fd = openSync(path.join(broken, "model.safetensors"), "r+");
    writeSync(fd, Buffer.from("{not json at all"), 0, 16, 8);
    closeSync(fd);
    const err = await failure(loadModel(broken, { client, name: "corrupt" }));
    expect((err as BridgeError).kind).toBe("bad_input");
    expect(err.message).toContain(path.join(broken, "model.safetensors"));
    expect(err.message).toMatch(/header/i);
    expect((err as BridgeError).remoteTraceback).toMatch(/Traceback/);
    await stillUsable();
  });

  it("a truncated weights file names the tensor", async () => {
    const cut = path.join(root, "truncated");
    cpSync(modelDir, cut, { recursive: true });
    const file = path.join(cut, "model.safetensors");
    copyFileSync(file, `${file}.orig`);
    const { truncateSync, statSync } = await import("node:fs");
    truncateSync(file, statSync(file).size - 1000);
    const err = await failure(loadModel(cut, { client, name: "cut" }));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/model\.\S+\.weight|lm_head|embed_tokens|norm/);
    await stillUsable();
  });

  it("an unsupported model_type", async () => {
    // gpt2 would run through transformers: an encoder-decoder is what neither path runs.
    const other = path.join(root, "t5");
    cpSync(modelDir, other, { recursive: true });
    const { readFileSync, writeFileSync } = await import("node:fs");
    const config = JSON.parse(readFileSync(path.join(other, "config.json"), "utf8"));
    writeFileSync(path.join(other, "config.json"), JSON.stringify({ ...config, model_type: "t5" }));
    const err = await failure(loadModel(other, { client, name: "t5" }));
    expect(err.message).toMatch(
      /model_type 't5' is not supported \(an encoder-decoder model\); thinkcells runs llama, .* natively, or any decoder-only model/,
    );
    await stillUsable();
  });

  it("an unknown option", async () => {
    const err = await failure(sample(model, tokenizer, "", { temprature: 0 } as never));
    expect(err).toBeInstanceOf(OptionsError);
    expect(err.message).toBe('sample: unknown option "temprature"');
    await stillUsable();
  });

  it("a negative temperature", async () => {
    const err = await failure(sample(model, tokenizer, "", { temperature: -0.5 }));
    expect(err).toBeInstanceOf(OptionsError);
    expect(err.message).toBe('sample: option "temperature": must be ≥ 0 (0 means greedy)');
    // Raw protocol calls are checked against the protocol declaration before they are sent.
    const raw = client.call("sample", {
      model: "default",
      prompt_ids: Tensor.int32([1]),
      prompt_lengths: Tensor.int32([1]),
      n: 1,
      max_new_tokens: 4,
      temperature: -0.5,
      top_p: 1,
      top_k: 0,
      stop_token_ids: [],
      seed: null,
      use_cache: true,
      entropy: false,
    });
    const rawError = (await failure(raw)) as BridgeError;
    expect(rawError.kind).toBe("invalid_request");
    expect(rawError.message).toMatch(/request: "temperature" Too small: expected number to be >=0/);
    await stillUsable();
  });

  it("a request longer than the model's context", async () => {
    const err = await failure(sample(model, tokenizer, "Once upon a time", { maxNewTokens: 600 }));
    expect(err.message).toMatch(
      /needs 60\d positions, more than the model's context of 512; load it with RoPE scaling/,
    );
    await stillUsable();
  });

  it("token ids outside the vocabulary and an unknown model name", async () => {
    const err = await failure(sample(model, tokenizer, [[1, 9999]]));
    expect(err.message).toMatch(/token id 9999 is outside the model's vocabulary \(0\.\.511\)/);
    const missing = await failure(sample({ ...model, name: "nope" }, tokenizer, ""));
    expect(missing.message).toMatch(/no model named 'nope' is loaded \(loaded: default\)/);
    await stillUsable();
  });
});
