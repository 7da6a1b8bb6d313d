/** The training loop behind every trainer, with scripted steps and no bridge: evaluation
 * cadence, the stop rules (each with its default and off), abort, and resuming only from a
 * checkpoint the same trainer saved. The real trainers run it in sft-train, dpo-train and grpo. */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { Model } from "../cells-lib/cells/model.ts";
import { localStore } from "../cells-lib/checkpoints/local-store.ts";
import { runShape } from "../cells-lib/training/cell-options.ts";
import { type LoopHooks, TrainingLoop } from "../cells-lib/training/loop.ts";
import type { TrainerKind } from "../cells-lib/training/loop-state.ts";
import type { EarlyStoppingRule } from "../cells-lib/training/stop-rules.ts";
import { tempDir } from "./helpers.ts";

const Step = z.object({ step: z.number().int(), gradNorm: z.number().nullable(), skipped: z.boolean() });
const Evaluation = z.object({ step: z.number().int(), valLoss: z.number() });
type Step = z.output<typeof Step>;
type Evaluation = z.output<typeof Evaluation>;

/** Asks the bridge for nothing: a scripted loop only touches the model when loading a state. */
const calls: string[] = [];
const model = {
  name: "scripted",
  client: {
    call: async (op: string) => {
      calls.push(op);
      return { step: 2 };
    },
  },
} as unknown as Model;

interface Script {
  steps?: number;
  gradNorms?: (number | null)[];
  skipped?: number[];
  valLosses?: number[];
  every?: number;
  run?: z.input<z.ZodObject<typeof runShape>>;
  earlyStopping?: EarlyStoppingRule;
  kind?: TrainerKind;
}

function scripted(script: Script) {
  const loop = new TrainingLoop({
    kind: script.kind ?? "sft",
    cell: "scripted",
    schemas: { step: Step, evaluation: Evaluation, state: z.object({ note: z.string() }) },
    rank: { metric: "valLoss", mode: "min" },
    ...(script.earlyStopping && { earlyStopping: script.earlyStopping }),
    options: z.object(runShape).parse({ display: false, ...script.run }),
  });
  let evaluated = 0;
  const hooks: LoopHooks<Step, Evaluation, { note: string }> = {
    model,
    totalSteps: script.steps ?? 10,
    step: async (index) => ({
      step: index + 1,
      gradNorm: script.gradNorms?.[index] ?? 1,
      skipped: script.skipped?.includes(index + 1) ?? false,
    }),
    nonFinite: (m) => m.skipped,
    ...(script.valLosses && {
      evaluation: {
        every: script.every ?? 1,
        atStart: false,
        run: async (step: number) => ({ step, valLoss: script.valLosses![evaluated++]! }),
      },
    }),
    state: () => ({ note: "scripted" }),
    chart: { title: "scripted", metrics: ["valLoss"] },
  };
  return { loop, hooks };
}

async function run(script: Script) {
  const { loop, hooks } = scripted(script);
  const trainer = loop.start(hooks, undefined, {});
  await trainer.run();
  return trainer;
}

describe("the training loop", () => {
  it("runs to the last step, evaluates every N steps and after the last, and picks the best evaluation", async () => {
    const trainer = await run({ steps: 5, every: 2, valLosses: [3, 1, 2] });
    expect(trainer.history.map((h) => h.step)).toEqual([1, 2, 3, 4, 5]);
    expect(trainer.evaluations).toEqual([
      { step: 2, valLoss: 3 },
      { step: 4, valLoss: 1 },
      { step: 5, valLoss: 2 },
    ]);
    expect(trainer.best).toEqual({ step: 4, valLoss: 1 });
    expect(trainer.stopped).toBeNull();
    expect(trainer.kind).toBe("sft");
  });

  it("stops when the evaluation loss has risen N evaluations in a row (default 5)", async () => {
    const rising = await run({ valLosses: [1, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2, 3, 4] });
    expect(rising.stopped).toMatchObject({ rule: "lossRises", step: 7 });
    expect(rising.stopped!.message).toBe("the evaluation loss rose 5 evaluations in a row, to 1.000 at step 7");
    expect(rising.history).toHaveLength(7);
    const two = await run({ valLosses: [1, 2, 1.5, 1.6, 1.7], run: { stopWhen: { lossRises: 2 } } });
    expect(two.stopped).toMatchObject({ rule: "lossRises", step: 5 });
    const off = await run({ valLosses: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], run: { stopWhen: { lossRises: null } } });
    expect(off.stopped).toBeNull();
    expect(off.history).toHaveLength(10);
  });

  it("stops when the gradient norm passes the threshold (default 1000)", async () => {
    const spike = await run({ gradNorms: [1, 999, 1500, 1] });
    expect(spike.stopped).toEqual({
      rule: "gradNormAbove",
      step: 3,
      message: "the gradient norm at step 3, 1500, is above stopWhen.gradNormAbove (1000)",
    });
    expect(spike.history).toHaveLength(3);
    expect((await run({ gradNorms: [1, 3], run: { stopWhen: { gradNormAbove: 2 } } })).stopped).toMatchObject({
      rule: "gradNormAbove",
      step: 2,
    });
    expect((await run({ gradNorms: [1e9], run: { stopWhen: { gradNormAbove: null } } })).stopped).toBeNull();
  });

  it("stops after N non-finite steps in a row (default 3); a finite step starts the count again", async () => {
    const trainer = await run({ skipped: [2, 3, 5, 6, 7, 8], gradNorms: [1, null, null, 1, null, null, null, null] });
    expect(trainer.stopped).toEqual({
      rule: "nonFiniteSteps",
      step: 7,
      message: "steps 5 to 7 (3 in a row) had a non-finite loss or gradient: their updates were skipped",
    });
    expect((await run({ skipped: [1], run: { stopWhen: { nonFiniteSteps: 1 } } })).stopped).toMatchObject({
      rule: "nonFiniteSteps",
      step: 1,
    });
    expect(
      (await run({ skipped: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], run: { stopWhen: { nonFiniteSteps: null } } })).stopped,
    ).toBeNull();
  });

  it("stops early on a metric when asked, and a new run() goes on from there", async () => {
    const { loop, hooks } = scripted({
      valLosses: [1, 0.9, 0.95, 0.99, 0.5],
      earlyStopping: { metric: "valLoss", mode: "min", patience: 2, minDelta: 0 },
    });
    const trainer = loop.start(hooks, undefined, {});
    await trainer.run();
    expect(trainer.stopped).toMatchObject({
      rule: "earlyStopping",
      step: 4,
      message: "early stopping: valLoss has not improved on 0.9 for 2 evaluations",
    });
    await trainer.run(1);
    expect(trainer.history).toHaveLength(5);
    expect(trainer.stopped).toBeNull();
  });

  it("aborts before the next step, by trainer.abort() or the signal option", async () => {
    const { loop, hooks } = scripted({});
    const trainer = loop.start(hooks, undefined, {});
    await trainer.step();
    trainer.abort(new Error("enough"));
    await expect(trainer.run()).rejects.toThrow("enough");
    expect(trainer.history).toHaveLength(1);
    const controller = new AbortController();
    const signalled = scripted({ run: { signal: controller.signal } });
    controller.abort(new Error("stop button"));
    await expect(signalled.loop.start(signalled.hooks, undefined, {}).step()).rejects.toThrow("stop button");
  });
});

describe("resuming", () => {
  /** A store holding one checkpoint whose metadata records `loop`. */
  async function storeWith(loop: unknown): Promise<string> {
    const root = tempDir("loop-resume");
    const staged = path.join(root, "staged");
    await mkdir(path.join(staged, "state"), { recursive: true });
    await writeFile(path.join(staged, "state", "state.json"), "{}");
    await localStore(path.join(root, "store")).put("step-000002", staged, { step: 2, loop: loop as never });
    return path.join(root, "store");
  }
  const resume = (store: string, kind: TrainerKind) =>
    scripted({ kind, run: { checkpoint: { store, every: 1 }, resume: "latest" } })
      .loop.resume(model)
      .then((r) => r.resumed);
  const saved = {
    history: [
      { step: 1, gradNorm: 1, skipped: false },
      { step: 2, gradNorm: null, skipped: true },
    ],
    evaluations: [],
    state: { note: "x" },
  };

  it("continues from what the same trainer saved", async () => {
    calls.length = 0;
    const store = await storeWith({ trainer: "sft", ...saved });
    expect(await resume(store, "sft")).toEqual(saved);
    expect(calls).toEqual(["load_state"]);
  });

  it("refuses a checkpoint another trainer saved, naming both, before touching the model", async () => {
    calls.length = 0;
    const store = await storeWith({ trainer: "sft", ...saved });
    await expect(resume(store, "grpo")).rejects.toThrow(
      'scripted: checkpoint "step-000002": the checkpoint was saved by trainSft (sft), not grpoTrainer (grpo): resume it with the trainer that saved it',
    );
    await expect(resume(store, "dpo")).rejects.toThrow(/saved by trainSft \(sft\), not trainDpo \(dpo\)/);
    expect(calls).toEqual([]);
  });

  it("resumes an untagged checkpoint (saved before checkpoints named their trainer) by its shape alone", async () => {
    calls.length = 0;
    expect(await resume(await storeWith(saved), "sft")).toEqual(saved);
    expect(calls).toEqual(["load_state"]);
  });

  it("refuses an untagged checkpoint of another shape, or a loop state of another shape", async () => {
    await expect(resume(await storeWith({ history: [], evaluations: [] }), "sft")).rejects.toThrow(
      /loop state \(it does not record which trainer saved it\) is not what trainSft saves: "state" /,
    );
    await expect(
      resume(
        await storeWith({ trainer: "sft", history: [{ step: "one" }], evaluations: [], state: { note: "x" } }),
        "sft",
      ),
    ).rejects.toThrow(
      /the checkpoint's loop state is not what trainSft saves: "history\.0\.step" .*; "history\.0\.gradNorm"/,
    );
  });
});
