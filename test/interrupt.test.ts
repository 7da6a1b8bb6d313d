/** Issue 20, item 3: the kernel's stop button (■) during trainSft, a GRPO trainer's run, sample
 * and evaluate. In process, `interrupt()` (what the kernel's SIGINT listener calls) is pressed at
 * chosen requests to the bridge: each stops with an InterruptedError that says what stopped and
 * how to go on, and a trainer's next run() ends with the history, evaluations and checkpoints of
 * an uninterrupted run. Then in the thinkcells Deno kernel and in tslab, through jupyter-server's
 * interrupt (SIGINT): the kernel survives, its variables stay, and the next cell continues the run. */
import path from "node:path";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { type Kernel, KernelManager, KernelMessage, SessionManager } from "@jupyterlab/services";
import { describe, expect, it } from "vitest";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { InterruptedError, interrupt, lastInterrupt } from "../cells-lib/cells/interrupt.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { splitDataset } from "../cells-lib/data/split.ts";
import { evaluate } from "../cells-lib/eval/evaluate.ts";
import { type GrpoRow, grpoTrainer } from "../cells-lib/grpo/trainer.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import type { RewardFn } from "../cells-lib/rl/rewards.ts";
import { type SftTrainer, sftTrainer, type TrainSftOptions, trainSft } from "../cells-lib/sft/train-sft.ts";
import { startJupyterServer } from "../kernel/jupyter-server.ts";
import { serverSettings } from "../kernel/run.ts";
import { stories, storiesSuite, tempDir } from "./helpers.ts";
import { tslabProjectDir, useTslabKernel } from "./tslab-kernelspec.ts";

const rows = generateArithmetic({ count: 300, seed: 3 }).map((r) => ({ ...formatExample(r), reference: r.answer }));
const { train, validation } = splitDataset(rows, { seed: 0 });
const prompts: GrpoRow[] = train.map(({ prompt, reference }) => ({ prompt, reference }));
/** A reward the base story model can move, and that rarely ties: the share of "a"s it writes. */
const letters: RewardFn = ({ completion }) => (completion.match(/a/g) ?? []).length / Math.max(1, completion.length);

/** `model`, whose client presses the stop button right after sending its `nth` `op` request. */
function interruptAt(model: Model, op: string, nth = 1): Model {
  let seen = 0;
  const client = new Proxy(model.client, {
    get(target, key) {
      if (key !== "call") return Reflect.get(target, key);
      return (...args: Parameters<Model["client"]["call"]>) => {
        const reply = target.call(...args);
        if (args[0] === op && ++seen === nth) interrupt();
        return reply;
      };
    },
  });
  return { ...model, client };
}

/** What `promise` was rejected with, which must be an InterruptedError. */
async function interrupted(promise: Promise<unknown>): Promise<InterruptedError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InterruptedError);
  expect(lastInterrupt()).toBe(err);
  return err as InterruptedError;
}

describe("interrupt (in process)", () => {
  const suite = storiesSuite("interrupt");

  it("is a no-op with nothing running", () => {
    expect(interrupt()).toBe(false);
  });

  it("stops trainSft mid-step and in an evaluation; run() continues as if never stopped", async () => {
    const { client, modelDir, tokenizer } = suite;
    const options = (store: string): TrainSftOptions => ({
      steps: 6,
      batchSize: 4,
      gradientAccumulation: 2,
      lr: 2e-3,
      evalEvery: 3,
      evalRows: 4,
      evalMaxNewTokens: 8,
      display: false,
      checkpoint: { store, every: 3 },
    });
    const data = { train, validation: validation.slice(0, 8) };
    const straight = await trainSft(
      await loadModel(modelDir, { client, name: "sft-straight" }),
      tokenizer,
      data,
      options(tempDir("interrupt-sft-a")),
    );

    // Stopped after step 2's first micro-batch: its gradients are dropped, nothing of it is applied.
    const model = interruptAt(await loadModel(modelDir, { client, name: "sft-cut" }), "forward_backward", 3);
    const cut = await interrupted(trainSft(model, tokenizer, data, options(tempDir("interrupt-sft-b"))));
    expect(cut.cell).toBe("trainSft");
    expect(cut.message).toBe(
      "trainSft: interrupted (the kernel's stop button) after step 1 of 6; nothing of step 2 was applied: " +
        "the trainer's run() continues from step 2. Nothing is lost (the trainer is also lastInterrupt().trainer).",
    );
    const trainer = cut.trainer as SftTrainer;
    expect(trainer.history).toHaveLength(1);

    // Stopped in step 3's evaluation (its validation loss is asked for; the sampling then stops).
    const sft = await sftTrainer(
      interruptAt(await loadModel(modelDir, { client, name: "sft-cut-2" }), "logprobs"),
      tokenizer,
      data,
      options(tempDir("interrupt-sft-c")),
    );
    const inEvaluation = await interrupted(sft.run(5));
    expect(inEvaluation.message).toBe(
      "trainSft: interrupted (the kernel's stop button) after step 3 of 6, in its evaluation: the trainer's run() " +
        "first finishes step 3's evaluation, then continues from step 4 (run(2) ends at step 5, as this run would have). " +
        "Nothing is lost (the trainer is also lastInterrupt().trainer).",
    );
    expect(sft.evaluations).toEqual([]);
    expect(sft.checkpoints).toEqual([]);
    await sft.run();
    await trainer.run();
    for (const resumed of [sft, trainer]) {
      expect(resumed.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(resumed.history.map((h) => [h.loss, h.gradNorm])).toEqual(
        straight.history.map((h) => [h.loss, h.gradNorm]),
      );
      expect(resumed.evaluations).toEqual(straight.evaluations);
      expect(resumed.checkpoints.map((c) => path.basename(c))).toEqual(
        straight.checkpoints.map((c) => path.basename(c)),
      );
    }
  }, 120_000);

  it("stops a GRPO trainer's run before its update; run() continues with the same prompts", async () => {
    const { client, modelDir, tokenizer } = suite;
    const options = {
      groupSize: 4,
      promptsPerStep: 2,
      microBatchSize: 4,
      maxNewTokens: 12,
      lr: 3e-4,
      steps: 4,
      seed: 1,
      display: false,
    };
    const rewards = { letters: { fn: letters, weight: 1 } };
    const straight = await grpoTrainer(await loadModel(modelDir, { client, name: "rl-straight" }), tokenizer, prompts, {
      ...options,
      rewards,
    });
    await straight.run();

    let pressed = false;
    const trainer = await grpoTrainer(await loadModel(modelDir, { client, name: "rl-cut" }), tokenizer, prompts, {
      ...options,
      // Pressed while step 3's rewards are scored: the step stops before its first forward/backward.
      rewards: {
        letters: {
          fn: (context) => {
            if (context.step === 3 && !pressed) pressed = interrupt();
            return letters(context);
          },
          weight: 1,
        },
      },
    });
    const err = await interrupted(trainer.run());
    expect(err.message).toMatch(/^grpo: interrupted \(the kernel's stop button\) after step 2 of 4; nothing of step 3/);
    expect(err.trainer).toBe(trainer);
    expect(trainer.history).toHaveLength(2);
    expect(trainer.rollouts.map((r) => r.step)).toEqual([2]);
    trainer.rewards = rewards;
    await trainer.run();
    const metrics = (t: typeof trainer) => t.history.map((h) => [h.step, h.reward, h.loss, h.gradNorm]);
    expect(metrics(trainer)).toEqual(metrics(straight));
    expect(trainer.rollouts.map((r) => r.step)).toEqual([4]);
  }, 120_000);

  it("stops sample and evaluate, cancelling the request in flight; the next call runs", async () => {
    const { client, modelDir, tokenizer } = suite;
    const model = await loadModel(modelDir, { client, name: "sampler" });
    const long = { n: 64, maxNewTokens: 400, stopTokenIds: [], seed: 1 };
    const err = await interrupted(sample(interruptAt(model, "sample"), tokenizer, ["Once upon a time"], long));
    expect(err.message).toBe(
      "sample: interrupted (the kernel's stop button) while sampling 64 completion(s) for each of 1 prompt(s); " +
        "the bridge stopped it and nothing is returned: run the cell again to sample",
    );
    const heldOut = validation.slice(0, 6);
    const evaluation = await interrupted(
      evaluate(interruptAt(model, "sample", 2), tokenizer, heldOut, { batchSize: 2, maxNewTokens: 8 }),
    );
    // The short second batch may end before its cancel arrives: then the third is not asked for.
    expect(evaluation.message.replace(/after [24] of/, "after 2 of")).toBe(
      "evaluate: interrupted (the kernel's stop button) after 2 of 6 prompts; it returns nothing: " +
        "run it again to evaluate (its seeds give the same completions)",
    );
    // A fresh signal for the next call: it runs to its end.
    expect(await sample(model, tokenizer, ["Once upon a time"], { maxNewTokens: 4, seed: 1 })).toHaveLength(1);
    expect((await evaluate(model, tokenizer, heldOut, { batchSize: 2, maxNewTokens: 8 })).rows).toBe(6);
  }, 120_000);
});

/** What a cell did: its reply's status, its error, and what it printed. */
interface CellResult {
  status: string;
  ename?: string;
  evalue?: string;
  printed: string;
}

/** Runs `code`; `onPrint` sees what it has printed so far, as it comes. Resolves once the cell
 * has replied and `complete` holds of what it did (or 5 s later): Deno's kernel can send a cell's
 * last output after its reply, so outputs are taken from the kernel's whole iopub stream. */
async function execute(
  kernel: Kernel.IKernelConnection,
  code: string,
  {
    onPrint = () => {},
    complete = () => true,
  }: { onPrint?: (printed: string) => void; complete?: (r: CellResult) => boolean } = {},
): Promise<CellResult> {
  const result: CellResult = { status: "", printed: "" };
  const future = kernel.requestExecute({ code, stop_on_error: true, allow_stdin: false });
  const listener = (_k: Kernel.IKernelConnection, msg: KernelMessage.IIOPubMessage) => {
    if ((msg.parent_header as { msg_id?: string }).msg_id !== future.msg.header.msg_id) return;
    if (KernelMessage.isStreamMsg(msg)) {
      result.printed += msg.content.text;
      onPrint(result.printed);
    } else if (KernelMessage.isErrorMsg(msg)) {
      result.ename = msg.content.ename;
      result.evalue = msg.content.evalue;
    }
  };
  kernel.iopubMessage.connect(listener);
  try {
    result.status = (await future.done).content.status;
    for (let waited = 0; !complete(result) && waited < 5000; waited += 50) await sleep(50);
  } finally {
    kernel.iopubMessage.disconnect(listener);
  }
  return result;
}

/** Runs `code`, which must succeed, and gives the last line it printed. */
async function printedLine(kernel: Kernel.IKernelConnection, code: string): Promise<string> {
  const r = await execute(kernel, code, { complete: (c) => c.printed.endsWith("\n") });
  expect(r, r.evalue).toMatchObject({ status: "ok" });
  return r.printed.trimEnd().split("\n").at(-1)!;
}

/** Runs `code` and presses the stop button (jupyter-server sends the kernel SIGINT) once it has
 * printed `cue`; resolves with the cell's error. */
function executeAndInterrupt(kernel: Kernel.IKernelConnection, code: string, cue: string): Promise<CellResult> {
  let pressed = false;
  const onPrint = (printed: string) => {
    if (pressed || !printed.includes(cue)) return;
    pressed = true;
    void kernel.interrupt();
  };
  return execute(kernel, code, { onPrint, complete: (r) => r.evalue !== undefined });
}

/** The first cell of both kernels' tests: stories260K converted, an uninterrupted GRPO run of 4
 * steps ("straight") and the same run ("trainer") whose step 3 scores for 5 s once. */
function grpoCells(modelDir: string): string {
  return `
        import { convertLlama2c, evaluate, formatExample, generateArithmetic, grpoTrainer, InterruptedError, lastInterrupt,
          loadModel, loadTokenizer, sample } from "thinkcells";
        const marker = 41;
        await convertLlama2c(${JSON.stringify(`${stories}/stories260K.bin`)}, ${JSON.stringify(`${stories}/tok512.bin`)},
          ${JSON.stringify(modelDir)});
        const tokenizer = await loadTokenizer(${JSON.stringify(modelDir)});
        const rows = generateArithmetic({ count: 300, seed: 3 }).map((r) => ({ ...formatExample(r), reference: r.answer }));
        const prompts = rows.map(({ prompt, reference }) => ({ prompt, reference }));
        const letters = (text: string) => (text.match(/a/g) ?? []).length / Math.max(1, text.length);
        const options = { groupSize: 4, promptsPerStep: 2, maxNewTokens: 12, lr: 3e-4, steps: 4, seed: 1 };
        const straight = await grpoTrainer(await loadModel(${JSON.stringify(modelDir)}, { name: "straight" }), tokenizer, prompts,
          { ...options, display: false, rewards: { letters: { fn: ({ completion }) => letters(completion), weight: 1 } } });
        await straight.run();
        // Step 3's rewards take 5 s once: the stop button is pressed then.
        let slowAt = 3;
        const slowOnce = async ({ completion, step }: { completion: string; step: number }) => {
          if (step === slowAt) {
            slowAt = 0;
            console.log("scoring step 3");
            await new Promise((r) => setTimeout(r, 5000));
          }
          return letters(completion);
        };
        const trainer = await grpoTrainer(await loadModel(${JSON.stringify(modelDir)}, { name: "cut" }), tokenizer, prompts,
          { ...options, rewards: { letters: { fn: slowOnce, weight: 1 } } });
        console.log("ready");
      `;
}

/** A notebook session on kernel `name` in a private jupyter-server rooted at `dir`, with a bridge
 * of its own; `use` gets the kernel. Everything is stopped after. */
async function withKernel(
  name: string,
  dir: string,
  use: (kernel: Kernel.IKernelConnection) => Promise<void>,
): Promise<void> {
  const session = path.basename(dir);
  const saved = { dir: process.env.THINKCELLS_BRIDGE_DIR, session: process.env.THINKCELLS_SESSION };
  // The kernel (a child of jupyter-server) inherits these: its bridge is this test's own.
  process.env.THINKCELLS_BRIDGE_DIR = path.join(dir, "bridge");
  process.env.THINKCELLS_SESSION = session;
  const server = await startJupyterServer(dir);
  const settings = serverSettings(`${server.baseUrl}?token=${server.token}`);
  const kernels = new KernelManager({ serverSettings: settings });
  const sessions = new SessionManager({ kernelManager: kernels, serverSettings: settings });
  try {
    const notebook = await sessions.startNew({
      path: "interrupt.ipynb",
      name: "interrupt.ipynb",
      type: "notebook",
      kernel: { name },
    });
    const kernel = notebook.kernel!;
    const statuses = new Set<Kernel.Status>();
    kernel.statusChanged.connect((_k, status) => statuses.add(status));
    await use(kernel);
    // The same kernel throughout: it never died or restarted.
    expect(notebook.kernel?.id).toBe(kernel.id);
    expect([...statuses].filter((s) => s === "dead" || s === "restarting" || s === "autorestarting")).toEqual([]);
    await notebook.shutdown();
  } finally {
    sessions.dispose();
    kernels.dispose();
    await server.stop();
    const client = await BridgeClient.connect({ session, dir: path.join(dir, "bridge"), start: false }).catch(
      () => undefined,
    );
    await client?.shutdown().catch(() => {});
    for (const [name, value] of [
      ["THINKCELLS_BRIDGE_DIR", saved.dir],
      ["THINKCELLS_SESSION", saved.session],
    ] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/** The stopped GRPO run's message, in either kernel. */
const GRPO_STOPPED =
  "grpo: interrupted (the kernel's stop button) after step 2 of 4; nothing of step 3 was applied: " +
  "the trainer's run() continues from step 3. Nothing is lost (the trainer is also lastInterrupt().trainer).";

/** Runs the interrupted trainer again; its steps' metrics must equal the uninterrupted run's. */
async function expectContinued(kernel: Kernel.IKernelConnection): Promise<void> {
  const histories = await printedLine(
    kernel,
    `await trainer.run();
    const metrics = (t: typeof trainer) => t.history.map((h) => [h.step, h.reward, h.loss, h.gradNorm]);
    console.log(JSON.stringify({ continued: metrics(trainer), straight: metrics(straight) }));`,
  );
  const { continued, straight } = JSON.parse(histories);
  expect(continued.map((m: number[]) => m[0])).toEqual([1, 2, 3, 4]);
  expect(continued).toEqual(straight);
}

describe("interrupt in the thinkcells Deno kernel", () => {
  it("survives the stop button during a GRPO run, sample and evaluate; the next run() continues", async () => {
    const dir = tempDir("interrupt-kernel");
    await withKernel("thinkcells", dir, async (kernel) => {
      const modelDir = path.join(dir, "stories260K");
      await printedLine(kernel, grpoCells(modelDir));

      const run = await executeAndInterrupt(kernel, "await trainer.run();", "scoring step 3");
      expect(run).toMatchObject({ status: "error", ename: "InterruptedError" });
      expect(run.evalue).toBe(GRPO_STOPPED);
      expect(run.printed).toContain("thinkcells: interrupt received: stopping grpo");
      // The same kernel, with what earlier cells defined.
      expect(
        await printedLine(
          kernel,
          "console.log(JSON.stringify([marker, trainer.history.length, lastInterrupt() instanceof InterruptedError]))",
        ),
      ).toBe("[41,2,true]");
      await expectContinued(kernel);

      const sampled = await executeAndInterrupt(
        kernel,
        `const model = await loadModel(${JSON.stringify(modelDir)}, { name: "sampler" });
        console.log("sampling");
        await sample(model, tokenizer, ["Once upon a time"], { n: 64, maxNewTokens: 400, stopTokenIds: [], seed: 1 });`,
        "sampling",
      );
      expect(sampled).toMatchObject({ status: "error", ename: "InterruptedError" });
      expect(sampled.evalue).toMatch(/^sample: interrupted \(the kernel's stop button\) while sampling 64 completion/);
      const evaluated = await executeAndInterrupt(
        kernel,
        `console.log("evaluating");
        await evaluate(model, tokenizer, rows, { batchSize: 8, maxNewTokens: 64, samples: 4 });`,
        "evaluating",
      );
      expect(evaluated).toMatchObject({ status: "error", ename: "InterruptedError" });
      expect(evaluated.evalue).toMatch(/^evaluate: interrupted \(the kernel's stop button\) after \d+ of 300 prompts/);

      // With nothing running the stop button stops nothing, and the kernel lives on.
      await kernel.interrupt();
      expect(await printedLine(kernel, "console.log(marker + 1)")).toBe("42");
    });
  }, 240_000);
});

describe("interrupt in a tslab kernel", () => {
  useTslabKernel();

  it("survives the stop button during a GRPO run; the next run() continues", async () => {
    // tslab imports the library's build from the notebook's node_modules.
    const dir = tslabProjectDir("interrupt-tslab");
    await withKernel("tslab", dir, async (kernel) => {
      await printedLine(kernel, grpoCells(path.join(dir, "stories260K")));
      const run = await executeAndInterrupt(kernel, "await trainer.run();", "scoring step 3");
      // tslab answers the interrupt itself and stops awaiting the cell; the library says what stopped.
      expect(run.status).toBe("error");
      expect(run.printed).toContain("Error: Interrupted asynchronously");
      expect(run.printed).toContain("thinkcells: interrupt received: stopping grpo");
      expect(run.printed).toContain(`InterruptedError: ${GRPO_STOPPED}`);
      expect(await printedLine(kernel, "console.log(JSON.stringify([marker, trainer.history.length]))")).toBe("[41,2]");
      await expectContinued(kernel);
    });
  }, 240_000);
});
