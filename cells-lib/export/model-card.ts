/** The README.md model card of an export: Hugging Face YAML front matter (library_name,
 * base_model, tags, ...) and a body with the training metadata. */
import { z } from "zod";

/** What the card says about how the model was made. Every field is optional. */
export const ModelCardInfo = z
  .object({
    /** The model training started from: a Hub id ("HuggingFaceTB/SmolLM2-135M") or a path.
     * Only a Hub id goes into the front matter's `base_model`; the table shows either. */
    baseModel: z.string().min(1).optional(),
    /** Training data: names, Hub dataset ids or paths. Hub ids also go into `datasets`. */
    data: z.union([z.string().min(1), z.array(z.string().min(1))]).optional(),
    /** "SFT", "GRPO", "DAPO", "PPO", "DPO", ... (also added, lower-cased, to the tags). */
    algorithm: z.string().min(1).optional(),
    /** Optimizer steps taken. */
    steps: z.number().int().nonnegative().optional(),
    /** Final metrics, e.g. { loss: 0.41, reward: 0.87 }. */
    metrics: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])).optional(),
    /** An SPDX id or Hub licence name ("apache-2.0", "mit", "other"). */
    license: z.string().min(1).optional(),
    /** Extra tags (thinkcells, reasoning, text-generation and the algorithm are always there). */
    tags: z.array(z.string().min(1)).default([]),
    /** The card's heading (default: the export directory's name). */
    title: z.string().min(1).optional(),
    /** Free text placed under the heading. */
    description: z.string().optional(),
  })
  .strict();
export type ModelCardInfo = z.input<typeof ModelCardInfo>;

/** What the export wrote, for the card's technical section. */
export interface ExportFacts {
  title: string;
  dtype: string;
  files: readonly string[];
  weightBytes: number;
  /** The merged LoRA adapters' settings (with `adapter`, the adapter's), or null. */
  lora: Record<string, unknown> | null;
  /** The export is the LoRA adapter alone, in PEFT's format (exportModel adapterOnly). */
  adapter?: boolean;
  onnx: { file: string; opset: number } | null;
  quantization: string | null;
  parameters: number;
  contextLength: number;
  exportedAt: Date;
}

/** A Hub repository id: `name` or `owner/name`, not a filesystem path. */
export function isHubId(value: string): boolean {
  return (
    /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(value) &&
    !value.includes("..") &&
    !/\.(jsonl?|csv|tsv|parquet|arrow|txt|md|bin|pt|pth|safetensors|onnx|gguf|gz|zip|tar)$/i.test(value)
  );
}

const yamlString = (s: string) => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar
const cell = (s: string) => s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
const code = (s: string) => `\`${s.replace(/`/g, "'")}\``;

function formatValue(v: number | string | boolean | null): string {
  if (v === null) return "—";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : Number(v.toPrecision(6)).toString();
  return String(v);
}

function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) [v, i] = [v / 1000, i + 1];
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** The card's tags: thinkcells, reasoning, text-generation, the algorithm, extras; deduplicated. */
export function cardTags(info: z.output<typeof ModelCardInfo>, facts: Pick<ExportFacts, "lora" | "onnx">): string[] {
  const tags = ["thinkcells", "reasoning", "text-generation"];
  if (info.algorithm) tags.push(info.algorithm.toLowerCase().replace(/\s+/g, "-"));
  if (facts.lora) tags.push("lora");
  if (facts.onnx) tags.push("onnx");
  tags.push(...info.tags);
  return [...new Set(tags)];
}

/** Renders README.md. */
export function renderModelCard(input: ModelCardInfo, facts: ExportFacts): string {
  const info = ModelCardInfo.parse(input);
  const data = info.data === undefined ? [] : Array.isArray(info.data) ? info.data : [info.data];
  const front: string[] = ["---", `library_name: ${facts.adapter ? "peft" : "transformers"}`];
  if (info.baseModel && isHubId(info.baseModel)) front.push(`base_model: ${yamlString(info.baseModel)}`);
  if (info.license) front.push(`license: ${yamlString(info.license)}`);
  const hubData = data.filter(isHubId);
  if (hubData.length) front.push("datasets:", ...hubData.map((d) => `- ${yamlString(d)}`));
  front.push(
    "pipeline_tag: text-generation",
    "tags:",
    ...cardTags(info, facts).map((t) => `- ${yamlString(t)}`),
    "---",
  );

  const rows: [string, string][] = [];
  rows.push(["Base model", info.baseModel ? code(info.baseModel) : "—"]);
  rows.push(["Training data", data.length ? data.map(code).join(", ") : "—"]);
  rows.push(["Algorithm", info.algorithm ?? "—"]);
  rows.push(["Steps", info.steps === undefined ? "—" : String(info.steps)]);
  if (facts.lora) {
    const l = facts.lora;
    const targets = Array.isArray(l.targets) ? l.targets.join(", ") : String(l.targets ?? "?");
    const rs = l.use_rslora ? " (rsLoRA)" : "";
    rows.push([
      "LoRA",
      facts.adapter
        ? `rank ${l.rank ?? "?"}, alpha ${l.alpha ?? "?"}${rs}, targets ${targets}; the adapter alone (PEFT format), not merged`
        : `rank ${l.rank ?? "?"}, alpha ${l.alpha ?? "?"}${rs}, targets ${targets}; merged into the weights (${l.merged_modules ?? "?"} modules)`,
    ]);
  } else {
    rows.push(["LoRA", "none (full weights)"]);
  }
  if (facts.quantization)
    rows.push(["Base weights", `trained quantized (${facts.quantization}), exported dequantized`]);
  rows.push(["Parameters", facts.parameters.toLocaleString("en-US")]);
  rows.push(["Context length", String(facts.contextLength)]);
  rows.push([facts.adapter ? "Adapter weights" : "Weights", `${facts.dtype}, ${formatBytes(facts.weightBytes)}`]);
  rows.push(["Exported", facts.exportedAt.toISOString()]);

  const body: string[] = ["", `# ${info.title ?? facts.title}`, ""];
  if (info.description) body.push(info.description.trim(), "");
  body.push(
    `Fine-tuned with thinkcells${info.algorithm ? ` (${info.algorithm})` : ""}${info.baseModel ? ` from ${code(info.baseModel)}` : ""}.`,
    "",
  );
  body.push("| | |", "|---|---|", ...rows.map(([k, v]) => `| ${k} | ${cell(v)} |`), "");

  const metrics = Object.entries(info.metrics ?? {});
  body.push("## Final metrics", "");
  if (metrics.length)
    body.push(
      "| metric | value |",
      "|---|---|",
      ...metrics.map(([k, v]) => `| ${cell(k)} | ${cell(formatValue(v))} |`),
    );
  else body.push("None recorded.");
  body.push("");

  body.push("## Files", "");
  body.push(...facts.files.filter((f) => f !== "README.md").map((f) => `- ${code(f)}`), "");
  if (facts.onnx) {
    body.push(
      "## ONNX",
      "",
      `${code(facts.onnx.file)} (opset ${facts.onnx.opset}, float32): input ${code("input_ids")} int64 [batch, sequence] → ` +
        `output ${code("logits")} float32 [batch, sequence, vocab]. No KV cache and no attention mask: each row is one ` +
        `unpadded sequence at positions 0..sequence-1; generation re-runs the whole sequence each step.`,
      "",
    );
  }
  if (facts.adapter) {
    const base = info.baseModel ?? "<base model>";
    body.push(
      "## Usage",
      "",
      "A LoRA adapter: load the base model, then the adapter onto it.",
      "",
      "```python",
      "from peft import PeftModel",
      "from transformers import AutoModelForCausalLM, AutoTokenizer",
      "",
      `base = AutoModelForCausalLM.from_pretrained(${JSON.stringify(base)})`,
      'model = PeftModel.from_pretrained(base, "<this directory or repo>")',
      'tokenizer = AutoTokenizer.from_pretrained("<this directory or repo>")',
      "```",
      "",
      "```ts",
      'import { loadAdapter, loadModel, loadTokenizer, sample } from "thinkcells";',
      "",
      `const model = await loadAdapter(await loadModel(${JSON.stringify(base)}), "<this directory>");`,
      'const [c] = await sample(model, await loadTokenizer("<this directory>"), "Once upon a time", { temperature: 0 });',
      "```",
      "",
    );
    return `${front.join("\n")}\n${body.join("\n")}`;
  }
  body.push(
    "## Usage",
    "",
    "```python",
    "from transformers import AutoModelForCausalLM, AutoTokenizer",
    "",
    'tokenizer = AutoTokenizer.from_pretrained("<this directory or repo>")',
    'model = AutoModelForCausalLM.from_pretrained("<this directory or repo>")',
    "```",
    "",
    "```ts",
    'import { loadModel, loadTokenizer, sample } from "thinkcells";',
    "",
    'const model = await loadModel("<this directory>");',
    'const [c] = await sample(model, await loadTokenizer("<this directory>"), "Once upon a time", { temperature: 0 });',
    "```",
    "",
  );
  return `${front.join("\n")}\n${body.join("\n")}`;
}
