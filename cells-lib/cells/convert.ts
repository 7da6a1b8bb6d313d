/** Converting other checkpoint formats to Hugging Face model directories. */
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { BridgeClient } from "../bridge/client.ts";
import { llama2cTokenizerConfig, llama2cTokenizerJson } from "../tokenizer/llama2c.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { bridge } from "./session.ts";

/** llama2.c `model.bin` + `tokenizer.bin` → an HF directory (config.json, generation_config.json,
 * model.safetensors, tokenizer.json, tokenizer_config.json). The bridge converts the weights and
 * writes the configs (the generation config stops at BOS, as llama2.c does); the tokenizer, being
 * text, is converted here. */
export async function convertLlama2c(
  modelBin: string,
  tokenizerBin: string,
  outDir: string,
  client?: BridgeClient,
): Promise<{ outDir: string; files: string[] }> {
  const bytes = await readFile(tokenizerBin).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`convertLlama2c: cannot read tokenizer ${tokenizerBin}: ${err.code ?? err.message}`);
  });
  const tokenizerJson = llama2cTokenizerJson(bytes, tokenizerBin);
  const out = path.resolve(outDir);
  await mkdir(out, { recursive: true });
  const c = client ?? (await bridge());
  await c.call("convert_llama2c", { bin_path: path.resolve(modelBin), out_dir: out });
  await writeFileAtomic(path.join(out, "tokenizer.json"), JSON.stringify(tokenizerJson));
  await writeFileAtomic(path.join(out, "tokenizer_config.json"), JSON.stringify(llama2cTokenizerConfig(), null, 2));
  const files = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
  ];
  return { outDir: out, files };
}
