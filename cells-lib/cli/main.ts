/** The `thinkcells` command line. */
import { parseArgs } from "node:util";
import process from "node:process";
import { convertLlama2c } from "../cells/convert.ts";
import { loadModel, status } from "../cells/model.ts";
import { sample } from "../cells/sample.ts";
import { bridge, disconnect } from "../cells/session.ts";
import { exportCheckpoint } from "../export/checkpoint.ts";
import { loadTokenizer } from "../tokenizer/tokenizer.ts";
import { checkNotebook } from "../../kernel/check.ts";
import { installKernel, uninstallKernel } from "../../kernel/kernelspec.ts";
import { parseAssignments } from "../../kernel/parameters.ts";
import { describeFailure, runNotebook } from "../../kernel/run.ts";
import { pushCommand, pushUsage } from "../hub/command.ts";
import { evaluate } from "../eval/evaluate.ts";
import { loadEvalRows } from "../eval/eval-rows.ts";
import type { ReasoningStyle } from "../reasoning/index.ts";
import type { TemplateName } from "../sft/templates.ts";

const usage = `usage:
  thinkcells convert llama2c MODEL.bin TOKENIZER.bin OUT_DIR
  thinkcells sample MODEL_DIR [--prompt TEXT] [--max-new-tokens N] [--temperature T] [--seed S]
                              [--top-p P] [--top-k K] [--n N]
  thinkcells export CHECKPOINT OUT_DIR [--onnx] [--base MODEL_DIR] [--dtype auto|float32|bfloat16|float16]
                                      [--shard-bytes N] [--algorithm NAME] [--data NAME]
  ${pushUsage}
  thinkcells eval MODEL_DIR --data FILE.jsonl [--samples K] [--max-new-tokens N] [--temperature T]
                           [--template NAME] [--style think|thinking|reasoning_answer|boxed] [--limit N]
  thinkcells check NOTEBOOK.ipynb
  thinkcells run NOTEBOOK.ipynb [-p NAME=VALUE ...] [--out EXECUTED.ipynb] [--html REPORT.html]
                                [--timeout SECONDS] [--kernel NAME] [--server URL]
  thinkcells kernel install [--name NAME] [--prefix DIR]
  thinkcells kernel uninstall [--name NAME] [--prefix DIR]
  thinkcells status
  thinkcells bridge stop`;

class UsageError extends Error {}

function number(name: string, value: string | undefined, integer = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${name} expects ${integer ? "an integer" : "a number"}, got "${value}"`);
  }
  return n;
}

async function run(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "convert": {
      const [format, modelBin, tokenizerBin, outDir, ...extra] = rest;
      if (format !== "llama2c" || !modelBin || !tokenizerBin || !outDir || extra.length) {
        throw new UsageError("convert expects: llama2c MODEL.bin TOKENIZER.bin OUT_DIR");
      }
      const { outDir: out, files } = await convertLlama2c(modelBin, tokenizerBin, outDir);
      console.log(`wrote ${out}: ${files.join(", ")}`);
      return;
    }
    case "sample": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          prompt: { type: "string" },
          "max-new-tokens": { type: "string" },
          temperature: { type: "string" },
          seed: { type: "string" },
          "top-p": { type: "string" },
          "top-k": { type: "string" },
          n: { type: "string" },
        },
      });
      if (positionals.length !== 1) throw new UsageError("sample expects one MODEL_DIR");
      const dir = positionals[0]!;
      const tokenizer = await loadTokenizer(dir);
      // Its own name, so a notebook's "default" model in the same session is left alone.
      const model = await loadModel(dir, { name: "cli" });
      const completions = await sample(model, tokenizer, values.prompt ?? "", {
        maxNewTokens: number("max-new-tokens", values["max-new-tokens"], true) ?? 256,
        temperature: number("temperature", values.temperature) ?? 1,
        seed: number("seed", values.seed, true),
        topP: number("top-p", values["top-p"]) ?? 1,
        topK: number("top-k", values["top-k"], true) ?? 0,
        n: number("n", values.n, true) ?? 1,
      });
      process.stdout.write(completions.map((c) => c.text).join("\n\n") + "\n");
      return;
    }
    case "export": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          onnx: { type: "boolean" },
          base: { type: "string" },
          dtype: { type: "string" },
          "shard-bytes": { type: "string" },
          algorithm: { type: "string" },
          data: { type: "string" },
        },
      });
      if (positionals.length !== 2) throw new UsageError("export expects CHECKPOINT OUT_DIR");
      const dtypes = ["auto", "float32", "bfloat16", "float16"] as const;
      const dtype = values.dtype ?? "auto";
      if (!(dtypes as readonly string[]).includes(dtype)) throw new UsageError(`--dtype expects one of ${dtypes.join(", ")}, got "${dtype}"`);
      const shardBytes = number("shard-bytes", values["shard-bytes"], true);
      if (shardBytes !== undefined && shardBytes < 1) throw new UsageError(`--shard-bytes expects a positive integer, got "${values["shard-bytes"]}"`);
      const result = await exportCheckpoint(positionals[0]!, positionals[1]!, {
        base: values.base,
        onnx: values.onnx ?? false,
        dtype: dtype as (typeof dtypes)[number],
        ...(shardBytes !== undefined ? { shardBytes } : {}),
        card: { ...(values.algorithm ? { algorithm: values.algorithm } : {}), ...(values.data ? { data: values.data } : {}) },
      });
      const lora = result.lora ? `, LoRA rank ${String(result.lora.rank)} merged into ${String(result.lora.merged_modules)} modules` : "";
      console.log(`exported step ${result.step} of ${result.baseModel}${lora} to ${result.dir} (${result.dtype}): ${result.files.join(", ")}`);
      return;
    }
    case "check": {
      const [notebook, ...extra] = rest;
      if (!notebook || extra.length) throw new UsageError("check expects one NOTEBOOK.ipynb");
      const result = await checkNotebook(notebook);
      for (const p of result.problems) console.error(`${notebook}: cell ${p.cell}, line ${p.line}:${p.column}: ${p.message}`);
      if (result.output) console.error(result.output);
      if (!result.ok) process.exit(1);
      console.log(`${notebook}: no type errors`);
      return;
    }
    case "run": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          parameter: { type: "string", short: "p", multiple: true },
          out: { type: "string" },
          html: { type: "string" },
          timeout: { type: "string" },
          kernel: { type: "string" },
          server: { type: "string" },
        },
      });
      if (positionals.length !== 1) throw new UsageError("run expects one NOTEBOOK.ipynb");
      const notebook = positionals[0]!;
      // @jupyterlab/services logs each WebSocket connection with console.debug (to stdout).
      console.debug = () => {};
      const result = await runNotebook(notebook, {
        parameters: parseAssignments(values.parameter ?? []),
        out: values.out,
        html: values.html,
        timeoutS: number("timeout", values.timeout),
        kernel: values.kernel,
        server: values.server,
        log: (line) => console.error(line),
      });
      if (values.out) console.error(`wrote ${values.out}`);
      if (values.html) console.error(`wrote ${values.html}`);
      if (result.failure) {
        console.error(describeFailure(notebook, result.failure));
        process.exitCode = 1;
      }
      return;
    }
    case "kernel": {
      const [action, ...args] = rest;
      const { values, positionals } = parseArgs({ args, options: { name: { type: "string" }, prefix: { type: "string" } } });
      if (positionals.length) throw new UsageError(`kernel ${action}: unexpected ${positionals.join(" ")}`);
      if (action === "install") {
        const { dir, changed } = await installKernel(values);
        console.log(`${changed ? "installed" : "already installed:"} kernelspec ${values.name ?? "thinkcells"} in ${dir}`);
      } else if (action === "uninstall") {
        console.log(`removed ${await uninstallKernel(values)}`);
      } else {
        throw new UsageError("kernel expects: install or uninstall");
      }
      return;
    }
    case "eval": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          data: { type: "string" },
          samples: { type: "string" },
          "max-new-tokens": { type: "string" },
          temperature: { type: "string" },
          template: { type: "string" },
          style: { type: "string" },
          limit: { type: "string" },
        },
      });
      if (positionals.length !== 1 || !values.data) throw new UsageError("eval expects MODEL_DIR --data FILE.jsonl");
      const dir = positionals[0]!;
      const rows = await loadEvalRows(values.data);
      const limit = number("limit", values.limit, true);
      const tokenizer = await loadTokenizer(dir);
      const model = await loadModel(dir, { name: "cli" });
      const result = await evaluate(model, tokenizer, limit ? rows.slice(0, limit) : rows, {
        samples: number("samples", values.samples, true) ?? 1,
        maxNewTokens: number("max-new-tokens", values["max-new-tokens"], true) ?? 256,
        temperature: number("temperature", values.temperature),
        ...(values.template ? { template: values.template as TemplateName } : {}),
        ...(values.style ? { style: values.style as ReasoningStyle } : {}),
      });
      const { details, ...metrics } = result;
      console.log(JSON.stringify(metrics, null, 2));
      return;
    }
    case "push":
      await pushCommand(rest);
      return;
    case "status":
      console.log(JSON.stringify(await status(), null, 2));
      return;
    case "bridge":
      if (rest[0] !== "stop") throw new UsageError("bridge expects: stop");
      await (await bridge()).shutdown();
      return;
    case undefined:
    case "-h":
    case "--help":
      console.log(usage);
      return;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

try {
  await run(process.argv.slice(2));
  await disconnect();
} catch (err) {
  await disconnect();
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    console.error(`thinkcells: ${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
  console.error(`thinkcells: ${(err as Error).message}`);
  process.exit(1);
}
