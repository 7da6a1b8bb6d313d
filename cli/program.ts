/** The `thinkcells` command line: every command, its options with their defaults and an
 * example, declared once with commander (which also writes the help from them). */
import process from "node:process";
import {
  Command,
  type CommanderError,
  type CommandUnknownOpts,
  Help,
  InvalidArgumentError,
  Option,
} from "@commander-js/extra-typings";
import { BridgeError } from "../cells-lib/bridge/errors.ts";
import { MODEL_DTYPES } from "../cells-lib/bridge/protocol.ts";
import { convertLlama2c } from "../cells-lib/cells/convert.ts";
import { loadModel, status } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { bridge } from "../cells-lib/cells/session.ts";
import { TEMPLATE_NAMES } from "../cells-lib/chat/templates.ts";
import { loadEvalRows } from "../cells-lib/eval/eval-rows.ts";
import { evaluate } from "../cells-lib/eval/evaluate.ts";
import { exportCheckpoint } from "../cells-lib/export/checkpoint.ts";
import { DEFAULT_SHARD_BYTES } from "../cells-lib/export/export-model.ts";
import { formatBytes } from "../cells-lib/hub/progress.ts";
import { pushToHub } from "../cells-lib/hub/push.ts";
import { REASONING_STYLES } from "../cells-lib/reasoning/markers.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { checkNotebook, describeProblem } from "../kernel/check.ts";
import { installKernel, KERNEL_NAME, uninstallKernel } from "../kernel/kernelspec.ts";
import { parseAssignments } from "../kernel/parameters.ts";
import { describeFailure, runNotebook } from "../kernel/run.ts";

/** The exit status of a command line that was not understood (a failed command exits 1). */
export const USAGE_EXIT = 2;

/** A command line that was not understood; the message names what and shows the usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Option value parsers: a wrong value is a usage error naming the option (commander adds it). */
function numeric(kind: "a number" | "an integer" | "a positive integer"): (value: string) => number {
  return (value) => {
    const n = Number(value);
    const ok =
      value.trim() !== "" &&
      Number.isFinite(n) &&
      (kind === "a number" || (Number.isInteger(n) && (kind === "an integer" || n > 0)));
    if (!ok) throw new InvalidArgumentError(`Expected ${kind}.`);
    return n;
  };
}
const number = numeric("a number");
const integer = numeric("an integer");
const positiveInteger = numeric("a positive integer");

/** "thinkcells kernel install" for that command. */
function commandPath(cmd: CommandUnknownOpts): string {
  const names: string[] = [];
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/** Commander's message for a command line it could not parse, reworded where it leaves out
 * what the command expects, followed by the usage and where to read more. */
function usageMessage(cmd: CommandUnknownOpts, err: CommanderError): string {
  const path = commandPath(cmd);
  const sub = path.split(" ").slice(1).join(" ");
  const expects = cmd.registeredArguments.length
    ? `${sub} expects ${cmd.registeredArguments.map((a) => a.name()).join(" ")}`
    : `${sub} takes no arguments`;
  let what: string;
  if (err.code === "commander.missingArgument") {
    const missing = cmd.registeredArguments
      .slice(cmd.args.length)
      .filter((a) => a.required)
      .map((a) => a.name());
    what = `missing ${missing.join(" and ")} (${expects})`;
  } else if (err.code === "commander.excessArguments") {
    const extra = cmd.args.slice(cmd.registeredArguments.length);
    what = `unexpected argument${extra.length === 1 ? "" : "s"} ${extra.map((a) => JSON.stringify(a)).join(" ")} (${expects})`;
  } else if (err.code === "commander.unknownCommand") {
    // Commander quotes the name as 'name'; "name" like the rest of thinkcells's messages.
    const name = cmd.args[0] ?? "";
    what = err.message.replace(`error: unknown command '${name}'`, `unknown command ${JSON.stringify(name)}`);
  } else {
    what = err.message.replace(/^error: /, "");
  }
  const more = sub
    ? `Run "thinkcells help ${sub}" for its options, their defaults and an example.`
    : 'Run "thinkcells help" for the commands.';
  return `${path}: ${what}\nusage: ${path} ${cmd.usage()}\n${more}`;
}

/** Settings for `cmd` and every command under it. Parse errors become a UsageError naming the
 * command they are about; help output ends the program (exit 0) as a CommanderError; printing
 * errors is left to the caller. Help is `thinkcells help [COMMAND...]` or `--help`, so groups get
 * no help subcommands of their own. */
function configureAll(cmd: CommandUnknownOpts): void {
  cmd.helpCommand(false);
  cmd.exitOverride((err) => {
    // `thinkcells kernel` with no subcommand: commander has printed the help to stderr.
    if (err.code === "commander.help" && err.exitCode !== 0) throw new UsageError("");
    if (err.exitCode === 0) throw err;
    throw new UsageError(usageMessage(cmd, err));
  });
  cmd.configureOutput({ outputError: () => {} });
  cmd.showSuggestionAfterError();
  for (const sub of cmd.commands) configureAll(sub);
}

function example(cmd: CommandUnknownOpts, ...lines: string[]): void {
  cmd.addHelpText("after", `\nExample:\n${lines.map((l) => `  ${l}`).join("\n")}`);
}

/** A model directory loaded for a command, under the bridge name "cli": a notebook's "default"
 * model in the same session is left alone. */
async function loadCliModel(dir: string) {
  return { tokenizer: await loadTokenizer(dir), model: await loadModel(dir, { name: "cli" }) };
}

/** Stops the session's bridge if one runs (never starting one) and says which. */
async function stopBridge(): Promise<void> {
  let client: Awaited<ReturnType<typeof bridge>>;
  try {
    client = await bridge({ start: false });
  } catch (err) {
    if (err instanceof BridgeError && err.kind === "not_running") {
      console.log("no bridge was running: nothing stopped");
      return;
    }
    throw err;
  }
  const { pid, session } = client.hello;
  await client.shutdown();
  console.log(`stopped the bridge of session "${session}" (pid ${pid})`);
}

export function cliProgram(): CommandUnknownOpts {
  const program = new Command("thinkcells")
    .description(
      "TypeScript notebooks that train reasoning language models: the command line. Commands that need " +
        "a model start the session's bridge (a Python worker) when none runs; it stays for the next " +
        "command until `thinkcells bridge stop` or 15 idle minutes.",
    )
    .configureHelp({
      // Commander shows a default only when it has a value; an option whose absence means
      // something (a fresh seed, the checkpoint's base model) says what through
      // .default(undefined, text).
      optionDescription(option) {
        const text = Help.prototype.optionDescription.call(this, option);
        return option.defaultValue === undefined && option.defaultValueDescription
          ? `${text} (default: ${option.defaultValueDescription})`
          : text;
      },
    })
    .addHelpText(
      "after",
      "\nEnvironment:\n" +
        '  THINKCELLS_SESSION     the bridge session (default: "default")\n' +
        "  THINKCELLS_BRIDGE_DIR  the bridge's runtime directory (default: $XDG_RUNTIME_DIR/thinkcells, else $TMPDIR/thinkcells-<uid>)\n" +
        "  THINKCELLS_PYTHON      the bridge's Python (default: the project's .venv)\n" +
        `\nExit status: 0 done, 1 the command failed, ${USAGE_EXIT} the command line was not understood.\n` +
        'Run "thinkcells help COMMAND" (or "thinkcells COMMAND --help") for a command\'s options.',
    );

  const convert = program
    .command("convert")
    .description("Convert a checkpoint of another format into a Hugging Face model directory");
  const llama2c = convert
    .command("llama2c")
    .summary("Convert a llama2.c checkpoint and tokenizer into a Hugging Face model directory")
    .description(
      "Convert a llama2.c checkpoint (legacy .bin) and its tokenizer.bin into a Hugging Face model directory: " +
        "config.json, generation_config.json (generation stops at BOS, as llama2.c's does), model.safetensors, " +
        "tokenizer.json and tokenizer_config.json.",
    )
    .argument("<MODEL.bin>", "the llama2.c checkpoint")
    .argument("<TOKENIZER.bin>", "the llama2.c tokenizer")
    .argument("<OUT_DIR>", "the model directory to write (created if needed)")
    .action(async (modelBin, tokenizerBin, outDir) => {
      const { outDir: out, files } = await convertLlama2c(modelBin, tokenizerBin, outDir);
      console.log(`wrote ${out}: ${files.join(", ")}`);
    });
  example(
    llama2c,
    "thinkcells convert llama2c assets/stories260K/stories260K.bin assets/stories260K/tok512.bin runs/stories260K",
  );

  const sampleCmd = program
    .command("sample")
    .summary("Sample completions of a prompt from a model directory")
    .description(
      "Sample completions of a prompt from a model directory; they go to stdout, separated by blank lines. " +
        "A completion ends at the model's stop tokens (generation_config.json's eos_token_id, else " +
        "config.json's) or after --max-new-tokens.",
    )
    .argument("<MODEL_DIR>", "a Hugging Face model directory (config.json, safetensors, tokenizer)")
    .addOption(new Option("--prompt <TEXT>", "the text to continue").default("", "empty: start from BOS"))
    .option("--max-new-tokens <N>", "the most tokens per completion", integer, 256)
    .option("--temperature <T>", "sampling temperature; 0 is greedy", number, 1)
    .option("--top-p <P>", "nucleus sampling: keep the smallest set of tokens with this much probability", number, 1)
    .option("--top-k <K>", "keep the K most likely tokens; 0 keeps all", integer, 0)
    .option("--n <N>", "completions of the prompt", integer, 1)
    .addOption(
      new Option("--seed <S>", "the same seed gives the same samples")
        .argParser(integer)
        .default(undefined, "a fresh seed each run"),
    )
    .action(async (dir, o) => {
      const { model, tokenizer } = await loadCliModel(dir);
      const completions = await sample(model, tokenizer, o.prompt, {
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        seed: o.seed,
        topP: o.topP,
        topK: o.topK,
        n: o.n,
      });
      process.stdout.write(`${completions.map((c) => c.text).join("\n\n")}\n`);
    });
  example(
    sampleCmd,
    'thinkcells sample runs/stories260K --prompt "Once upon a time" --temperature 0 --max-new-tokens 64',
  );

  const exportCmd = program
    .command("export")
    .summary("Export a training checkpoint as a Hugging Face model directory")
    .description(
      "Export a training checkpoint as a standalone Hugging Face model directory: LoRA merged into the " +
        "base weights, the tokenizer, the generation config and a model card (and ONNX with --onnx).",
    )
    .argument(
      "<CHECKPOINT>",
      "a checkpoint directory (a store's checkpoint, or a bare saveState directory with --base)",
    )
    .argument("<OUT_DIR>", "the directory to write")
    .option("--onnx", "also write onnx/model.onnx", false)
    .addOption(
      new Option("--base <MODEL_DIR>", "the base model directory").default(
        undefined,
        "the base model the checkpoint names",
      ),
    )
    .addOption(
      new Option("--dtype <DTYPE>", "the weights' dtype; auto keeps the model's")
        .choices(MODEL_DTYPES)
        .default("auto" as const),
    )
    .option(
      "--shard-bytes <N>",
      "split the weights into safetensors shards of at most N bytes",
      positiveInteger,
      DEFAULT_SHARD_BYTES,
    )
    .addOption(
      new Option("--algorithm <NAME>", "the training algorithm the model card names").default(
        undefined,
        "the checkpoint's",
      ),
    )
    .addOption(
      new Option("--data <NAME>", "the training data the model card names").default(undefined, "the checkpoint's"),
    )
    .action(async (checkpoint, outDir, o) => {
      const result = await exportCheckpoint(checkpoint, outDir, {
        base: o.base,
        onnx: o.onnx,
        dtype: o.dtype,
        shardBytes: o.shardBytes,
        card: { ...(o.algorithm ? { algorithm: o.algorithm } : {}), ...(o.data ? { data: o.data } : {}) },
      });
      const lora = result.lora
        ? `, LoRA rank ${String(result.lora.rank)} merged into ${String(result.lora.merged_modules)} modules`
        : "";
      console.log(
        `exported step ${result.step} of ${result.baseModel}${lora} to ${result.dir} (${result.dtype}): ${result.files.join(", ")}`,
      );
    });
  example(exportCmd, "thinkcells export runs/sft/ckpt/best runs/sft/model --onnx");

  const push = program
    .command("push")
    .summary("Upload a directory to the Hugging Face Hub")
    .description(
      "Upload a directory (an exported model) to the Hugging Face Hub as one commit, creating the repo " +
        "if needed. The token comes from HF_TOKEN (or HUGGING_FACE_HUB_TOKEN) only: an argument would " +
        "show in `ps` and shell history.",
    )
    .argument("<OUT_DIR>", "the directory to upload")
    .argument("<REPO_ID>", "the Hub repo, e.g. you/stories-sft")
    .addOption(
      new Option("--private", "make a repo this push creates private").default(
        undefined,
        "the namespace's default, usually public",
      ),
    )
    .option("--revision <R>", "the branch to commit to (created if missing)", "main")
    .addOption(
      new Option("--endpoint <URL>", "the Hub's URL").default(undefined, "$HF_ENDPOINT, else https://huggingface.co"),
    )
    .addOption(new Option("--message <M>", "the commit message").default(undefined, '"Upload N files with thinkcells"'))
    .action(async (dir, repoId, o) => {
      // The progress bar goes to stderr (the terminal renderer's place for it); the result to stdout.
      const result = await pushToHub(dir, repoId, {
        private: o.private,
        revision: o.revision,
        endpoint: o.endpoint,
        commitMessage: o.message,
      });
      const files = `${result.files} file${result.files === 1 ? "" : "s"}`;
      console.log(
        `${result.created ? "created and pushed to" : "pushed to"} ${result.repoUrl}: ${files}, ${formatBytes(result.bytes)}, commit ${result.commitUrl}`,
      );
    });
  example(push, "HF_TOKEN=hf_… thinkcells push runs/sft/model you/stories-sft --private");

  const evalCmd = program
    .command("eval")
    .summary("Evaluate a model on rows with reference answers")
    .description(
      "Evaluate a model on rows with reference answers; prints accuracy, format accuracy and pass@k as JSON.",
    )
    .argument("<MODEL_DIR>", "a Hugging Face model directory")
    .requiredOption(
      "--data <FILE>",
      "the rows (required): JSONL, JSON or CSV with a reference answer (RL prompt + answer, GSM8K, MATH)",
    )
    .option("--samples <K>", "completions per prompt; pass@k is reported for k = 1 and K", integer, 1)
    .option("--max-new-tokens <N>", "the most tokens per completion", integer, 256)
    .addOption(
      new Option("--temperature <T>", "sampling temperature")
        .argParser(number)
        .default(undefined, "0 with one sample, else 1"),
    )
    .addOption(
      new Option("--template <NAME>", "how prompts are rendered: the template the model was trained with")
        .choices(TEMPLATE_NAMES)
        .default("plain" as const),
    )
    .addOption(
      new Option("--style <STYLE>", "the reasoning format completions are scored in")
        .choices(REASONING_STYLES)
        .default("think" as const),
    )
    .addOption(new Option("--limit <N>", "evaluate the first N rows").argParser(integer).default(undefined, "all rows"))
    .action(async (dir, o) => {
      const rows = await loadEvalRows(o.data);
      const { model, tokenizer } = await loadCliModel(dir);
      const { details, ...metrics } = await evaluate(model, tokenizer, o.limit ? rows.slice(0, o.limit) : rows, {
        samples: o.samples,
        maxNewTokens: o.maxNewTokens,
        temperature: o.temperature,
        template: o.template,
        style: o.style,
      });
      console.log(JSON.stringify(metrics, null, 2));
    });
  example(evalCmd, "thinkcells eval runs/demo/model --data test.jsonl --samples 4 --max-new-tokens 48");

  const check = program
    .command("check")
    .summary("Type-check a notebook")
    .description(
      "Type-check a notebook's code cells together, as the kernel runs them; names the cell and line of each error and exits 1.",
    )
    .argument("<NOTEBOOK.ipynb>", "the notebook")
    .action(async (notebook) => {
      const result = await checkNotebook(notebook);
      for (const p of result.problems) console.error(describeProblem(notebook, p));
      if (result.output) console.error(result.output);
      if (!result.ok) {
        process.exitCode = 1;
        return;
      }
      console.log(`${notebook}: no type errors`);
    });
  example(check, "thinkcells check notebooks/03-grpo-arithmetic.ipynb");

  const run = program
    .command("run")
    .summary("Run a notebook headless")
    .description(
      "Run a notebook headless through jupyter-server, papermill-style: -p values replace the defaults of " +
        "the cell tagged `parameters`; progress goes to stderr. Exits 1 naming the cell that failed.",
    )
    .argument("<NOTEBOOK.ipynb>", "the notebook")
    .addOption(
      new Option("-p, --parameter <NAME=VALUE>", "set a parameter (repeatable); the value is typed like its default")
        .argParser((value: string, previous: string[]) => [...previous, value])
        .default([] as string[], "the parameters cell's values"),
    )
    .addOption(
      new Option("--out <EXECUTED.ipynb>", "write the executed notebook (also when a cell fails)").default(
        undefined,
        "not written",
      ),
    )
    .addOption(
      new Option("--html <REPORT.html>", "write a self-contained HTML report").default(undefined, "not written"),
    )
    .addOption(
      new Option("--timeout <SECONDS>", "stop a cell that runs longer (and its kernel)")
        .argParser(number)
        .default(undefined, "no limit"),
    )
    .option("--kernel <NAME>", "the Jupyter kernel", KERNEL_NAME)
    .addOption(
      new Option("--server <URL>", "a running jupyter-server, http://host:port/?token=…").default(
        undefined,
        "a private one on 127.0.0.1",
      ),
    )
    .action(async (notebook, o) => {
      // @jupyterlab/services logs each WebSocket connection with console.debug (to stdout).
      console.debug = () => {};
      const result = await runNotebook(notebook, {
        parameters: parseAssignments(o.parameter),
        out: o.out,
        html: o.html,
        timeoutS: o.timeout,
        kernel: o.kernel,
        server: o.server,
        log: (line) => console.error(line),
      });
      if (o.out) console.error(`wrote ${o.out}`);
      if (o.html) console.error(`wrote ${o.html}`);
      if (result.failure) {
        console.error(describeFailure(notebook, result.failure));
        process.exitCode = 1;
      }
    });
  example(
    run,
    "thinkcells run notebooks/02-sft-cold-start.ipynb -p sftSteps=100 --out runs/executed.ipynb --html runs/report.html",
  );

  const kernel = program
    .command("kernel")
    .description('Install or remove the "TypeScript (thinkcells)" Jupyter kernel');
  const kernelOptions = (cmd: Command) =>
    cmd
      .option("--name <NAME>", "the kernelspec's name", KERNEL_NAME)
      .addOption(
        new Option("--prefix <DIR>", "use PREFIX/share/jupyter (a virtualenv or conda prefix)").default(
          undefined,
          "the user's Jupyter data directory",
        ),
      );
  const install = kernelOptions(
    kernel.command("install").description("Install the kernelspec (again: updates it)"),
  ).action(async (o) => {
    const { dir, changed } = await installKernel(o);
    console.log(`${changed ? "installed" : "already installed:"} kernelspec ${o.name} in ${dir}`);
  });
  example(install, "thinkcells kernel install --prefix .venv");
  const uninstall = kernelOptions(kernel.command("uninstall").description("Remove the kernelspec")).action(
    async (o) => {
      console.log(`removed ${await uninstallKernel(o)}`);
    },
  );
  example(uninstall, "thinkcells kernel uninstall");

  const statusCmd = program
    .command("status")
    .summary("Print the bridge's device, memory and models")
    .description(
      "Print the bridge's device, dtype, memory and loaded models as JSON (starts the session's bridge if none runs).",
    )
    .action(async () => {
      console.log(JSON.stringify(await status(), null, 2));
    });
  example(statusCmd, "thinkcells status");

  const bridgeCmd = program.command("bridge").description("Manage the session's bridge (the Python worker)");
  const stop = bridgeCmd
    .command("stop")
    .summary("Stop the session's bridge")
    .description(
      "Stop the session's bridge, freeing its models; never starts one. Prints the pid it stopped, or that " +
        "none was running (exit status 0 either way: afterwards none runs).",
    )
    .action(stopBridge);
  example(stop, "THINKCELLS_SESSION=default thinkcells bridge stop");

  const help = program
    .command("help")
    .description("Show the help of the program or of a command")
    .argument("[COMMAND...]", "a command, e.g. sample or kernel install (default: the program)")
    .action((names) => {
      let cmd: CommandUnknownOpts = program;
      for (const name of names) {
        const sub = cmd.commands.find((c) => c.name() === name);
        if (!sub)
          throw new UsageError(
            `thinkcells help: unknown command ${JSON.stringify(names.join(" "))}\nRun "thinkcells help" for the commands.`,
          );
        cmd = sub;
      }
      cmd.outputHelp();
    });
  example(help, "thinkcells help kernel install");

  configureAll(program);
  return program;
}
