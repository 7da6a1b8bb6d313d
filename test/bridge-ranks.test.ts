/** `bridge({ nproc: 2 })`: the bridge as two torchrun ranks (CPU, gloo) behind one socket. The
 * cells work unchanged and give one process's results; a rank killed mid-request gives the client
 * its "crashed" error within seconds. (Numerical checks of every path: test/bridge/test_distributed.py.) */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BridgeClient, bridgeNproc } from "../cells-lib/bridge/client.ts";
import { BridgeError } from "../cells-lib/bridge/errors.ts";
import { loadModel, type Model } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { applyLora, forwardBackward, optimStep } from "../cells-lib/cells/train.ts";
import { additionExamples, storiesSuite, tempDir } from "./helpers.ts";

const one = storiesSuite("ranks-one");
const dir = tempDir("bridge-ranks");
const clients: BridgeClient[] = [];

async function connectPair(session: string): Promise<BridgeClient> {
  const client = await BridgeClient.connect({ session, dir, idleTimeoutS: 60, nproc: 2 });
  clients.push(client);
  return client;
}

let pair: BridgeClient;
beforeAll(async () => {
  pair = await connectPair("ranks");
});
afterAll(async () => {
  await pair.shutdown().catch(() => {});
  for (const c of clients) c.close();
});

/** Two LoRA steps of the addition set, then greedy completions: the losses, norms and texts. */
async function run(model: Model) {
  const trained = await applyLora(model, { rank: 4, dropout: 0 });
  const steps = [];
  for (let step = 0; step < 2; step++) {
    const { loss } = await forwardBackward(trained, additionExamples(one.tokenizer, step), { kind: "cross_entropy" });
    const { gradNorm } = await optimStep(trained, { lr: 5e-3 });
    steps.push({ loss: loss!, gradNorm: gradNorm! });
  }
  const prompts = ["12+30?", "7+8?", "Once upon"];
  const texts = (await sample(trained, one.tokenizer, prompts, { n: 2, temperature: 0, maxNewTokens: 24 })).map(
    (c) => c.text,
  );
  return { steps, texts };
}

/** The pids whose parent is `pid` (Linux /proc). */
function children(pid: number): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return Number(readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]!.split(" ")[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe("a bridge of two ranks", () => {
  it("trains and samples as one process does", async () => {
    const status = await pair.call("status", {});
    expect(status.world_size).toBe(2);
    const expected = await run(await loadModel(one.modelDir, { client: one.client, name: "one" }));
    const got = await run(await loadModel(one.modelDir, { client: pair, name: "two" }));
    expect(got.texts).toEqual(expected.texts);
    for (const [i, step] of got.steps.entries()) {
      expect(step.loss).toBeCloseTo(expected.steps[i]!.loss, 5);
      expect(step.gradNorm).toBeCloseTo(expected.steps[i]!.gradNorm, 5);
    }
  });

  it("takes the rank count from THINKCELLS_NPROC, and names it when it is not a count", () => {
    expect(bridgeNproc(undefined, { THINKCELLS_NPROC: "4" })).toBe(4);
    expect(bridgeNproc(3, { THINKCELLS_NPROC: "4" })).toBe(3);
    expect(bridgeNproc(undefined, {})).toBe(1);
    expect(() => bridgeNproc(undefined, { THINKCELLS_NPROC: "two" })).toThrow(/THINKCELLS_NPROC: expected a positive/);
  });

  it("gives a crashed error within seconds when a rank dies mid-request", async () => {
    const client = await connectPair("ranks-killed");
    const model = await loadModel(one.modelDir, { client, name: "killed" });
    const pending = sample(model, one.tokenizer, ["Once", "upon", "a", "time"], {
      n: 64,
      maxNewTokens: 400,
      stopTokenIds: [],
    });
    const session = JSON.parse(readFileSync(path.join(dir, "ranks-killed.json"), "utf8")) as { launcher_pid: number };
    const [other] = children(session.launcher_pid).filter((pid) => pid !== client.hello.pid);
    await new Promise((r) => setTimeout(r, 500));
    process.kill(other!, "SIGKILL");
    const started = Date.now();
    const err = await pending.catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).kind).toBe("crashed");
  });
});
