import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BridgeClient, bridgePackageDir, findPython } from "../cells-lib/bridge/client.ts";
import { Tensor } from "../cells-lib/bridge/frames.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { logprobs } from "../cells-lib/cells/sample.ts";
import {
  addValueHead,
  applyLora,
  forwardBackward,
  loadState,
  optimStep,
  saveState,
  type TrainingExample,
  values,
} from "../cells-lib/cells/train.ts";
import { repoRoot, tempDir, testBridge } from "./helpers.ts";

// Two architectures with no native code, run by transformers' own modules behind the bridge.
const FAMILIES = {
  gpt_neox: ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
  olmo2: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
} as const;
type Family = keyof typeof FAMILIES;

const run = promisify(execFile);
const bridge = testBridge("transformers");
const root = tempDir("transformers");
const env = { ...process.env, PYTHONPATH: bridgePackageDir, HF_HUB_OFFLINE: "1" };
let client: BridgeClient;

beforeAll(async () => {
  for (const family of Object.keys(FAMILIES)) {
    await run(findPython(), [path.join(repoRoot, "scripts/make_random_hf.py"), family, path.join(root, family)], {
      env,
    });
  }
  client = await bridge.connect();
});
afterAll(() => bridge.stop());

/** Fixed token sequences of a 256-token vocabulary (ids 3..255), `count` of `length` tokens. */
function sequences(count: number, length: number, seed: number): number[][] {
  return Array.from({ length: count }, (_, i) =>
    Array.from({ length }, (_, t) => 3 + ((seed * 31 + i * 17 + t * t * 7 + t * 13) % 253)),
  );
}

const batch: TrainingExample[] = sequences(4, 12, 1).map((tokens) => ({ tokens }));

async function step(model: Model): Promise<number> {
  const { loss } = await forwardBackward(model, batch, { kind: "cross_entropy" });
  const o = await optimStep(model, { lr: 1e-2 });
  expect(o.skipped).toBe(false);
  return loss!;
}

/** log p(token t | tokens < t) per sequence, as transformers computes it for a model directory. */
async function transformersLogprobs(dir: string, seqs: number[][]): Promise<number[][]> {
  const script = [
    "import json, sys, torch",
    "from transformers import AutoModelForCausalLM",
    "model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()",
    "out = []",
    "for seq in json.loads(sys.argv[2]):",
    "    ids = torch.tensor([seq])",
    "    with torch.no_grad():",
    "        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)",
    "    out.append(logp.gather(-1, ids[0, 1:, None])[:, 0].tolist())",
    "print(json.dumps(out))",
  ].join("\n");
  const { stdout } = await run(findPython(), ["-c", script, dir, JSON.stringify(seqs)], { env });
  return JSON.parse(stdout);
}

describe.each(Object.keys(FAMILIES) as Family[])("a random %s checkpoint through transformers", (family) => {
  const dir = () => path.join(root, family);

  it("loads as a transformers-backed model and samples, cached decoding equal to full recomputation", async () => {
    const model = await loadModel(dir(), { client, name: `${family}-sample` });
    expect(model.info).toMatchObject({
      model_type: family,
      backend: "transformers",
      lora_targets: [...FAMILIES[family]],
      vocab_size: 256,
      eos_token_ids: [2],
      rope_scaling: null,
    });
    const prompts = [
      [1, 5, 9, 33, 7, 100],
      [1, 44],
    ];
    const call = (temperature: number, useCache: boolean) =>
      client.call("sample", {
        model: model.name,
        prompt_ids: Tensor.int32(prompts.flat()),
        prompt_lengths: Tensor.int32(prompts.map((p) => p.length)),
        n: 2,
        max_new_tokens: 10,
        temperature,
        top_p: 1,
        top_k: 0,
        stop_token_ids: [],
        seed: 5,
        use_cache: useCache,
        entropy: false,
      });
    const drawn = await call(1, true);
    expect(drawn.tokens.shape).toEqual([4, 10]);
    expect(Array.from(drawn.tokens.data as Int32Array).every((t) => t >= 0 && t < 256)).toBe(true);
    expect(Array.from(drawn.logprobs.data as Float32Array).every((lp) => Number.isFinite(lp) && lp <= 0)).toBe(true);
    const [cached, full] = [await call(0, true), await call(0, false)];
    expect(Array.from(cached.tokens.data as Int32Array)).toEqual(Array.from(full.tokens.data as Int32Array));
    await expect(
      loadModel(dir(), { client, name: "scaled", ropeScaling: { type: "linear", factor: 2 } }),
    ).rejects.toThrow(/loadModel ropeScaling is for the native families/);
  });

  it("runs every loss kind in forward_backward (LoRA, value head, gradient checkpointing)", async () => {
    const model = await addValueHead(
      await applyLora(await loadModel(dir(), { client, name: `${family}-losses` }), { rank: 4, dropout: 0 }),
    );
    const [tokens, rejected] = sequences(2, 10, 2);
    const [old] = await logprobs(model, [tokens!]);
    const [v] = await values(model, [tokens!]);
    const onPolicy = { tokens: tokens!, oldLogprobs: [0, ...old!], advantage: 1 };
    const results = [
      await forwardBackward(model, batch, { kind: "cross_entropy" }, { gradientCheckpointing: true }),
      await forwardBackward(model, [onPolicy], { kind: "policy_gradient", beta: 0.1, entropyCoef: 0.01 }),
      await forwardBackward(model, [{ ...onPolicy, oldValues: [0, ...v!], returns: tokens!.map(() => 1) }], {
        kind: "ppo",
      }),
      await forwardBackward(model, [{ tokens: tokens! }, { tokens: rejected! }], { kind: "dpo" }),
    ];
    for (const r of results) expect(Number.isFinite(r.loss)).toBe(true);
    expect(results[2]!.metrics.value_loss).toBeGreaterThan(0);
    expect(results[3]!.loss).toBeCloseTo(Math.log(2), 5); // adapters at B = 0: policy = reference
    const o = await optimStep(model, { lr: 1e-3 });
    expect(o.skipped).toBe(false);
    expect(o.gradNorm).toBeGreaterThan(0);
  });

  it("lowers the loss in 5 LoRA steps, resumes exactly from saved state, and exports what transformers reloads", async () => {
    const model = await applyLora(await loadModel(dir(), { client, name: `${family}-train` }), {
      rank: 4,
      dropout: 0.1,
    });
    expect(model.info.trainable_parameters).toBeLessThan(model.info.parameters);
    const losses = [await step(model), await step(model), await step(model)];
    await saveState(model, path.join(root, `${family}-state`));
    losses.push(await step(model), await step(model));
    expect(losses[4]!).toBeLessThan(losses[0]!);

    // Another model of the same directory, given the state: the same two steps, bit for bit.
    const resumed = await loadModel(dir(), { client, name: `${family}-resumed` });
    expect((await loadState(resumed, path.join(root, `${family}-state`))).step).toBe(3);
    expect([await step(resumed), await step(resumed)]).toEqual(losses.slice(3));
    const probe = sequences(3, 9, 3);
    expect(await logprobs(resumed, probe)).toEqual(await logprobs(model, probe));

    const out = path.join(root, `${family}-export`);
    const exported = await client.call("export_model", {
      model: model.name,
      dir: out,
      shard_bytes: null,
      dtype: "float32",
      metadata: {},
      onnx: null,
    });
    expect(exported.files).toEqual(["config.json", "generation_config.json", "model.safetensors"]);
    expect(exported.lora).toMatchObject({ rank: 4, merged_modules: 2 * FAMILIES[family].length });
    const reloaded = await transformersLogprobs(out, probe);
    const bridged = await logprobs(model, probe);
    reloaded.forEach((row, i) => row.forEach((lp, t) => expect(Math.abs(lp - bridged[i]![t]!)).toBeLessThan(1e-5)));
    await expect(
      client.call("export_model", {
        model: model.name,
        dir: path.join(root, `${family}-onnx`),
        shard_bytes: null,
        dtype: "float32",
        metadata: {},
        onnx: { opset: 18 },
      }),
    ).rejects.toThrow(/ONNX export covers Llama-shaped native models .* this .* model \(transformers\) is not one/);
  });
});

it("refuses a model neither path runs with one error naming model_type and what is supported", async () => {
  const dir = path.join(root, "bert");
  mkdirSync(dir);
  writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "bert" }));
  await expect(loadModel(dir, { client })).rejects.toThrow(
    new RegExp(
      String.raw`config\.json: model_type 'bert' is not supported \(an encoder model\); thinkcells runs llama, .* natively, ` +
        String.raw`or any decoder-only model transformers' AutoModelForCausalLM builds \(transformers \d+\.\d+`,
    ),
  );
});
