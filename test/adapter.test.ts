import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadAdapter, saveAdapter } from "../cells-lib/cells/adapter.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { logprobs } from "../cells-lib/cells/sample.ts";
import { applyLora, forwardBackward, optimStep } from "../cells-lib/cells/train.ts";
import { exportModel } from "../cells-lib/export/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { additionExamples, storiesSuite, tempDir } from "./helpers.ts";

const suite = storiesSuite("adapter");
const root = tempDir("adapter");
let policy: Model;
let sequences: number[][];
let trained: number[][];

beforeAll(async () => {
  policy = await applyLora(await loadModel(suite.modelDir, { client: suite.client, name: "policy" }), {
    rank: 4,
    dropout: 0,
    targets: ["q_proj", "v_proj", "down_proj"],
  });
  for (let step = 0; step < 3; step++) {
    await forwardBackward(policy, additionExamples(suite.tokenizer, step), { kind: "cross_entropy" });
    expect((await optimStep(policy, { lr: 1e-2 })).skipped).toBe(false);
  }
  sequences = additionExamples(suite.tokenizer, 99).map((e) => [...e.tokens]);
  trained = await logprobs(policy, sequences);
});

describe("saveAdapter / loadAdapter", () => {
  it("writes PEFT's files, and a fresh model that loads them scores exactly as the trained one", async () => {
    const saved = await saveAdapter(policy, path.join(root, "adapter"), { baseModel: "karpathy/tinyllamas" });
    expect(saved.files).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect(saved.settings).toEqual({
      rank: 4,
      alpha: 8,
      dropout: 0,
      targets: ["q_proj", "v_proj", "down_proj"],
      seed: 0,
    });
    expect(saved.dtype).toBe("float32");
    const config = JSON.parse(readFileSync(path.join(saved.dir, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ["down_proj", "q_proj", "v_proj"],
      base_model_name_or_path: "karpathy/tinyllamas",
      use_rslora: false,
      use_dora: false,
    });
    expect(readdirSync(root).filter((f) => f.startsWith("."))).toEqual([]); // no staging left

    const fresh = await loadModel(suite.modelDir, { client: suite.client, name: "fresh" });
    const base = await logprobs(fresh, sequences);
    const loaded = await loadAdapter(fresh, saved.dir);
    expect(loaded.info.trainable_parameters).toBe(policy.info.trainable_parameters);
    expect(await logprobs(loaded, sequences)).toEqual(trained);
    expect(base).not.toEqual(trained);
    // It trains on from there.
    expect(
      (await forwardBackward(loaded, additionExamples(suite.tokenizer, 3), { kind: "cross_entropy" })).loss,
    ).toBeGreaterThan(0);
    expect((await optimStep(loaded, { lr: 1e-2 })).step).toBe(1);
  });

  it("refuses a model without adapters, a directory that is no adapter, and unrelated files", async () => {
    const plain = await loadModel(suite.modelDir, { client: suite.client, name: "plain" });
    await expect(saveAdapter(plain, path.join(root, "none"))).rejects.toThrow(
      /model 'plain' has no LoRA adapters to save/,
    );
    expect(existsSync(path.join(root, "none"))).toBe(false);
    await expect(loadAdapter(plain, path.join(root, "nowhere"))).rejects.toThrow(/no such adapter directory/);
    await expect(loadAdapter(plain, suite.modelDir)).rejects.toThrow(/adapter_config\.json is missing/);
    const notes = path.join(root, "notes");
    mkdirSync(notes);
    writeFileSync(path.join(notes, "keep.txt"), "mine");
    await expect(saveAdapter(policy, notes)).rejects.toThrow(/not an adapter directory/);
    expect(readdirSync(notes)).toEqual(["keep.txt"]);
    await expect(saveAdapter(policy, path.join(root, "x"), { base: "y" } as never)).rejects.toThrow(OptionsError);
  });
});

describe("exportModel adapterOnly", () => {
  it("writes the PEFT adapter with tokenizer files and a card, and it loads back", async () => {
    const out = path.join(root, "exported-adapter");
    const exported = await exportModel(policy, suite.tokenizer, out, {
      adapterOnly: true,
      card: { baseModel: "karpathy/tinyllamas", algorithm: "SFT" },
    });
    expect(exported.format).toBe("peft-adapter");
    expect(exported.files).toEqual([
      "README.md",
      "adapter_config.json",
      "adapter_model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(readdirSync(out).sort()).toEqual(exported.files);
    expect(exported.lora).toMatchObject({ rank: 4, alpha: 8 });
    expect(exported.onnx).toBeNull();
    expect(exported.card).toContain("library_name: peft");
    expect(exported.card).toContain('base_model: "karpathy/tinyllamas"');
    expect(exported.card).toContain("PeftModel.from_pretrained");
    expect(exported.card).toContain("the adapter alone (PEFT format), not merged");
    const again = await loadAdapter(await loadModel(suite.modelDir, { client: suite.client, name: "again" }), out);
    expect(await logprobs(again, sequences)).toEqual(trained);
    // An adapter export may be replaced by a later one; the default export stays merged.
    expect((await exportModel(policy, suite.tokenizer, out, { adapterOnly: true })).files).toContain(
      "adapter_model.safetensors",
    );
    expect((await exportModel(policy, suite.tokenizer, path.join(root, "merged"))).format).toBe("merged");
  });

  it("refuses a model without LoRA and options it cannot honour, leaving nothing behind", async () => {
    const plain = await loadModel(suite.modelDir, { client: suite.client, name: "plain2" });
    const out = path.join(root, "no-lora");
    await expect(exportModel(plain, suite.tokenizer, out, { adapterOnly: true })).rejects.toThrow(
      /has no LoRA adapters to save/,
    );
    await expect(exportModel(policy, suite.tokenizer, out, { adapterOnly: true, onnx: true })).rejects.toThrow(
      /"adapterOnly" and "onnx" exclude each other/,
    );
    await expect(exportModel(policy, suite.tokenizer, out, { adapterOnly: true, dtype: "bfloat16" })).rejects.toThrow(
      /not available with adapterOnly/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).filter((f) => f.startsWith("."))).toEqual([]);
  });
});
