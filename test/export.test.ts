import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../cells-lib/bridge/client.ts";
import { loadModel, type Model, status } from "../cells-lib/cells/model.ts";
import { type Completion, sample } from "../cells-lib/cells/sample.ts";
import { applyLora, forwardBackward, optimStep, saveState } from "../cells-lib/cells/train.ts";
import { localStore } from "../cells-lib/checkpoints/local-store.ts";
import {
  cardFromMeta,
  type ExportResult,
  exportModel,
  onnxGenerate,
  onnxSession,
  renderModelCard,
} from "../cells-lib/export/index.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { TrainingCheckpoints } from "../cells-lib/training/checkpointing.ts";
import { additionExamples, convertStories, repoRoot, tempDir, testBridge } from "./helpers.ts";

const run = promisify(execFile);
const root = tempDir("export");
const bridge = testBridge("export");
const cli = path.join(repoRoot, "bin/thinkcells.mjs");
const env = () => ({ ...process.env, THINKCELLS_BRIDGE_DIR: bridge.dir, THINKCELLS_SESSION: bridge.session });
let client: BridgeClient;
let modelDir: string;
let tokenizer: Tokenizer;

const PROMPT = "12+30?";
const GREEDY = { temperature: 0, maxNewTokens: 40, stopTokenIds: [] as number[] };

const examples = (step: number) => additionExamples(tokenizer, step);

async function train(model: Model, steps: number): Promise<number[]> {
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    losses.push((await forwardBackward(model, examples(s), { kind: "cross_entropy" })).loss!);
    expect((await optimStep(model, { lr: 1e-2 })).skipped).toBe(false);
  }
  return losses;
}

let policy: Model;
let before: Completion;
let after: Completion;
let losses: number[];
let exported: ExportResult;
const outDir = path.join(root, "exported");

beforeAll(async () => {
  client = await bridge.connect();
  modelDir = await convertStories(root, client);
  tokenizer = await loadTokenizer(modelDir);
  policy = await applyLora(await loadModel(modelDir, { client, name: "policy" }), { rank: 8, dropout: 0 });
  [before] = (await sample(policy, tokenizer, PROMPT, GREEDY)) as [Completion];
  losses = await train(policy, 20);
  [after] = (await sample(policy, tokenizer, PROMPT, GREEDY)) as [Completion];
  const t0 = performance.now();
  exported = await exportModel(policy, tokenizer, outDir, {
    card: {
      data: "synthetic a+b arithmetic",
      algorithm: "SFT",
      steps: 20,
      metrics: { loss: losses.at(-1)!, first_loss: losses[0]! },
    },
    onnx: true,
  });
  console.log(
    `exportModel with ONNX: ${(performance.now() - t0).toFixed(0)} ms; losses ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(3)}`,
  );
});
afterAll(() => bridge.stop());

describe("exportModel", () => {
  it("writes a merged Hugging Face directory with tokenizer, generation config, card and ONNX", () => {
    expect(losses.at(-1)!).toBeLessThan(0.6 * losses[0]!);
    expect(after.tokenIds).not.toEqual(before.tokenIds); // training changed the greedy output
    expect(after.tokenIds).toHaveLength(40);
    expect(exported.files).toEqual([
      "README.md",
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "onnx/model.onnx",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(readdirSync(outDir).sort()).toEqual([
      "README.md",
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "onnx",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(readdirSync(root).filter((f) => f.startsWith("."))).toEqual([]); // no staging left
    expect(exported.dtype).toBe("float32");
    expect(exported.lora).toMatchObject({ rank: 8, alpha: 16, targets: "all-linear", merged_modules: 35 });
    expect(exported.weightBytes).toBe(260032 * 4);
    expect(exported.onnx).toMatchObject({ path: path.join(outDir, "onnx", "model.onnx"), opset: 18 });
    expect(JSON.parse(readFileSync(path.join(outDir, "generation_config.json"), "utf8"))).toMatchObject({
      bos_token_id: 1,
      eos_token_id: [2, 1],
    });
    expect(readFileSync(path.join(outDir, "tokenizer.json"))).toEqual(
      readFileSync(path.join(modelDir, "tokenizer.json")),
    );
  });

  it("reloads in the bridge as the adapter model: the same greedy tokens", async () => {
    const reloaded = await loadModel(outDir, { client, name: "exported" });
    expect(reloaded.info.trainable_parameters).toBe(260032); // plain weights: no adapters
    const exportedTokenizer = await loadTokenizer(outDir);
    const [again] = await sample(reloaded, exportedTokenizer, PROMPT, GREEDY);
    expect(again!.tokenIds).toEqual(after.tokenIds);
    expect(again!.text).toBe(after.text);
    // With the default stop tokens (EOS) too, and from another prompt.
    for (const prompt of [PROMPT, "7+9?", "Once upon a time"]) {
      const [a] = await sample(policy, tokenizer, prompt, { temperature: 0, maxNewTokens: 40 });
      const [b] = await sample(reloaded, exportedTokenizer, prompt, { temperature: 0, maxNewTokens: 40 });
      expect(b!.tokenIds).toEqual(a!.tokenIds);
    }
  });

  it("runs the ONNX export on onnxruntime-node with the same greedy tokens", async () => {
    const t0 = performance.now();
    const viaOnnx = await onnxGenerate(exported.onnx!.path, tokenizer, PROMPT, { maxNewTokens: 40, stopTokenIds: [] });
    console.log(`onnxGenerate, 40 tokens: ${(performance.now() - t0).toFixed(0)} ms`);
    expect(viaOnnx.promptIds).toEqual(after.promptIds);
    expect(viaOnnx.tokenIds).toEqual(after.tokenIds);
    expect(viaOnnx.text).toBe(after.text);
    viaOnnx.logprobs.forEach((lp, i) => expect(lp).toBeCloseTo(after.logprobs[i]!, 3));
    // A reused session, default stop tokens (config.json's EOS is not known to a bare session,
    // so pass it), other prompts.
    const session = await onnxSession(exported.onnx!.path);
    try {
      for (const prompt of ["7+9?", "Once upon a time"]) {
        const [a] = await sample(policy, tokenizer, prompt, { temperature: 0, maxNewTokens: 30 });
        const b = await onnxGenerate(session, tokenizer, prompt, {
          maxNewTokens: 30,
          stopTokenIds: policy.info.eos_token_ids,
        });
        expect(b.tokenIds).toEqual(a!.tokenIds);
        expect(b.stopReason).toBe(a!.stopReason);
      }
    } finally {
      await session.release();
    }
    await expect(onnxGenerate(exported.onnx!.path, tokenizer, PROMPT, { maxNewTokens: 600 })).rejects.toThrow(
      /exceeds the model's context of 512/,
    );
  });

  it("writes a model card with the training metadata", () => {
    const card = readFileSync(path.join(outDir, "README.md"), "utf8");
    expect(card).toBe(exported.card);
    const [, front, body] = card.split(/^---$/m);
    expect(front).toContain("library_name: transformers");
    expect(front).toMatch(/tags:\n- "thinkcells"\n- "reasoning"\n- "text-generation"\n- "sft"\n- "lora"\n- "onnx"/);
    expect(front).not.toContain("base_model:"); // a local path is not a Hub id
    expect(body).toContain(`| Base model | \`${modelDir}\` |`);
    expect(body).toContain("| Training data | `synthetic a+b arithmetic` |");
    expect(body).toContain("| Algorithm | SFT |");
    expect(body).toContain("| Steps | 20 |");
    expect(body).toContain("| LoRA | rank 8, alpha 16, targets all-linear; merged into the weights (35 modules) |");
    expect(body).toContain(`| loss | ${Number(losses.at(-1)!.toPrecision(6))} |`);
    expect(body).toContain("`onnx/model.onnx` (opset 18, float32)");
  });

  it("leaves the live model training, and never replaces a directory that is not a model", async () => {
    const next = await forwardBackward(policy, examples(20), { kind: "cross_entropy" });
    expect(next.loss).toBeLessThan(losses[0]!);
    await optimStep(policy, { lr: 1e-2 });
    const notes = path.join(root, "notes");
    mkdirSync(notes);
    writeFileSync(path.join(notes, "keep.txt"), "mine");
    await expect(exportModel(policy, tokenizer, notes)).rejects.toThrow(
      /not a model directory.*refusing to replace it/,
    );
    expect(readdirSync(notes)).toEqual(["keep.txt"]);
    // A missing tokenizer fails before anything is written.
    await expect(
      exportModel(policy, tokenizer, path.join(root, "x"), { tokenizerDir: path.join(root, "nowhere") }),
    ).rejects.toThrow(/tokenizerDir .* has no tokenizer.json/);
    expect(existsSync(path.join(root, "x"))).toBe(false);
    // A failure after the bridge wrote the weights (copying a "tokenizer.json" that is a
    // directory) leaves the earlier export as it was and no staging directory behind.
    const broken = path.join(root, "broken-tokenizer");
    mkdirSync(path.join(broken, "tokenizer.json"), { recursive: true });
    const weights = readFileSync(path.join(outDir, "model.safetensors"));
    await expect(exportModel(policy, tokenizer, outDir, { tokenizerDir: broken })).rejects.toThrow(
      /EISDIR|illegal operation on a directory/,
    );
    expect(readFileSync(path.join(outDir, "model.safetensors"))).toEqual(weights);
    expect(readdirSync(outDir).sort()).toEqual([
      "README.md",
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "onnx",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(readdirSync(root).filter((f) => f.startsWith("."))).toEqual([]);
  });

  it("shards above shardBytes and renders Hub ids into the front matter", async () => {
    const sharded = await exportModel(policy, tokenizer, path.join(root, "sharded"), {
      shardBytes: 300_000,
      card: { baseModel: "karpathy/tinyllamas", data: ["openai/gsm8k", "local.jsonl"] },
    });
    expect(sharded.files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(2);
    expect(sharded.files).toContain("model.safetensors.index.json");
    const reloaded = await loadModel(path.join(root, "sharded"), { client, name: "sharded" });
    const [a] = await sample(policy, tokenizer, PROMPT, GREEDY);
    const [b] = await sample(reloaded, tokenizer, PROMPT, GREEDY);
    expect(b!.tokenIds).toEqual(a!.tokenIds);
    expect(sharded.card).toContain('base_model: "karpathy/tinyllamas"');
    expect(sharded.card).toContain('datasets:\n- "openai/gsm8k"\n');
    expect(sharded.card).not.toContain('- "local.jsonl"');
    expect(
      renderModelCard(
        { metrics: {} },
        {
          title: "t",
          dtype: "float32",
          files: [],
          weightBytes: 1,
          lora: null,
          onnx: null,
          quantization: null,
          parameters: 1,
          contextLength: 1,
          exportedAt: new Date(0),
        },
      ),
    ).toContain("None recorded.");
  });
});

describe("thinkcells export", () => {
  it("exports a checkpoint written by TrainingCheckpoints, and the export samples through the CLI", async () => {
    const store = path.join(root, "checkpoints");
    const checkpoints = new TrainingCheckpoints({ store, every: 1, keepBest: 1, keepLast: 1 }, "loss", "min");
    const model = await applyLora(await loadModel(modelDir, { client, name: "ckpt" }), { rank: 4, dropout: 0 });
    const trained = await train(model, 8);
    const name = await checkpoints.save(
      model,
      { step: 8, loop: { algorithm: "GRPO", data: "openai/gsm8k", history: [] } },
      { loss: trained.at(-1)! },
    );
    expect(name).toBe("step-000008");
    const [expected] = await sample(model, tokenizer, PROMPT, GREEDY);

    const out = path.join(root, "cli-export");
    const t0 = performance.now();
    const { stdout } = await run("node", [cli, "export", path.join(store, name), out, "--onnx"], { env: env() });
    console.log(`thinkcells export --onnx: ${(performance.now() - t0).toFixed(0)} ms`);
    expect(stdout).toMatch(
      new RegExp(
        `^exported step 8 of ${modelDir}, LoRA rank 4 merged into 35 modules to ${out} \\(float32\\): README.md, config.json`,
      ),
    );
    const card = readFileSync(path.join(out, "README.md"), "utf8");
    expect(card).toContain("| Algorithm | GRPO |");
    expect(card).toContain("| Steps | 8 |");
    expect(card).toContain('- "grpo"');
    expect(card).toContain('datasets:\n- "openai/gsm8k"');
    expect(card).toContain(`| loss | ${Number(trained.at(-1)!.toPrecision(6))} |`);
    // The bridge model the CLI used is gone again.
    expect((await status(client)).models.map((m) => m.name)).not.toContain(expect.stringMatching(/^export-/));

    const sampled = await run(
      "node",
      [cli, "sample", out, "--prompt", PROMPT, "--temperature", "0", "--max-new-tokens", "40"],
      { env: env() },
    );
    const [withEos] = await sample(model, tokenizer, PROMPT, { temperature: 0, maxNewTokens: 40 });
    expect(sampled.stdout).toBe(`${withEos!.text}\n`);
    const viaOnnx = await onnxGenerate(path.join(out, "onnx", "model.onnx"), tokenizer, PROMPT, {
      maxNewTokens: 40,
      stopTokenIds: [],
    });
    expect(viaOnnx.tokenIds).toEqual(expected!.tokenIds);
  });

  it("exports a bare saveState directory with --base, and a manual store checkpoint", async () => {
    const model = await applyLora(await loadModel(modelDir, { client, name: "bare" }), { rank: 2, dropout: 0 });
    await train(model, 4);
    const stateDir = path.join(root, "bare-state");
    await saveState(model, stateDir);
    const [expected] = await sample(model, tokenizer, PROMPT, GREEDY);

    const missing = await run("node", [cli, "export", stateDir, path.join(root, "bare-out")], { env: env() }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((missing as { code: number }).code).toBe(1);
    expect((missing as { stderr: string }).stderr).toMatch(/does not name its base model .*--base MODEL_DIR/);

    await run(
      "node",
      [cli, "export", stateDir, path.join(root, "bare-out"), "--base", modelDir, "--algorithm", "DPO"],
      { env: env() },
    );
    const reloaded = await loadModel(path.join(root, "bare-out"), { client, name: "bare-out" });
    expect((await sample(reloaded, tokenizer, PROMPT, GREEDY))[0]!.tokenIds).toEqual(expected!.tokenIds);
    expect(readFileSync(path.join(root, "bare-out", "README.md"), "utf8")).toContain("| Steps | 4 |");
    expect(existsSync(path.join(root, "bare-out", "onnx"))).toBe(false);

    // A checkpoint put by hand: saveState into a folder's state/, then localStore.put with meta.
    const staging = path.join(root, "manual");
    await saveState(model, path.join(staging, "state"));
    await localStore(path.join(root, "store")).put("best", staging, {
      base_model: modelDir,
      step: 4,
      metrics: { reward: 0.75 },
      loop: { algorithm: "DAPO" },
    });
    expect(
      cardFromMeta({
        base_model: modelDir,
        step: 4,
        metrics: { reward: 0.75, nested: {} },
        loop: { algorithm: "DAPO" },
      }),
    ).toEqual({
      baseModel: modelDir,
      steps: 4,
      metrics: { reward: 0.75 },
      algorithm: "DAPO",
    });
    await run(
      "node",
      [cli, "export", path.join(root, "store", "best"), path.join(root, "manual-out"), "--dtype", "bfloat16"],
      { env: env() },
    );
    const card = readFileSync(path.join(root, "manual-out", "README.md"), "utf8");
    expect(card).toContain("| reward | 0.75 |");
    expect(card).toContain("| Weights | bfloat16, 520.1 KB |");
    expect(JSON.parse(readFileSync(path.join(root, "manual-out", "config.json"), "utf8")).torch_dtype).toBe("bfloat16");

    const usage = await run("node", [cli, "export", stateDir], { env: env() }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((usage as { code: number }).code).toBe(2);
    expect((usage as { stderr: string }).stderr).toMatch(/export expects CHECKPOINT OUT_DIR/);
  });
});
