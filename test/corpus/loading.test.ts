/** Loading faults (issue 13) through loadModel and a real bridge: NaN weights, and two clients
 * loading under one model name. The Python side has the rest (test_corpus_loading.py). */
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BridgeClient } from "../../cells-lib/bridge/client.ts";
import { BridgeError } from "../../cells-lib/bridge/errors.ts";
import { loadModel, type Model } from "../../cells-lib/cells/model.ts";
import { convertStories, tempDir, testBridge } from "../helpers.ts";

const root = tempDir("corpus-loading");
const bridge = testBridge("corpus-loading");
let notebook: BridgeClient;
let script: BridgeClient;
let modelDir: string;

beforeAll(async () => {
  [notebook, script] = [await bridge.connect(), await bridge.connect()];
  modelDir = await convertStories(root, notebook);
});
afterAll(() => bridge.stop());

async function bridgeError(p: Promise<unknown>): Promise<BridgeError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BridgeError);
  return err as BridgeError;
}

/** Overwrites the first value of a float32 tensor in a safetensors file with NaN. */
function poison(file: string, tensor: string): void {
  const bytes = readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8"));
  expect(header[tensor].dtype).toBe("F32");
  bytes.writeFloatLE(Number.NaN, 8 + headerLength + header[tensor].data_offsets[0]);
  writeFileSync(file, bytes);
}

describe("loading faults", () => {
  it("N5: NaN weights are refused, naming the file and tensor, unless allowNonFinite", async () => {
    const dir = path.join(root, "nan");
    cpSync(modelDir, dir, { recursive: true });
    const file = path.join(dir, "model.safetensors");
    poison(file, "model.norm.weight");
    const err = await bridgeError(loadModel(dir, { client: notebook, name: "nan" }));
    expect(err.kind).toBe("bad_input");
    expect(err.message).toContain(`${file}: tensor 'model.norm.weight' has 1 NaN and 0 Inf values`);
    expect(err.message).toContain("allowNonFinite");
    const model = await loadModel(dir, { client: notebook, name: "nan", allowNonFinite: true });
    expect(model.info.path).toBe(dir);
  });

  it("C1: loading over a name another client holds is refused, naming it, unless replace", async () => {
    await loadModel(modelDir, { client: notebook });
    const err = await bridgeError(loadModel(modelDir, { client: script }));
    expect(err.kind).toBe("bad_input");
    expect(err.message).toMatch(
      new RegExp(`'default' is held by thinkcells pid ${process.pid} \\(connection \\d+\\), which loaded ${modelDir}`),
    );
    expect(err.message).toContain("replace: true");

    await loadModel(modelDir, { client: notebook }); // re-running its own cell
    await loadModel(modelDir, { client: script, replace: true });
    await bridgeError(loadModel(modelDir, { client: notebook })); // now the script holds it
  });

  it("C1: a client that has gone holds nothing: a restarted kernel reloads under its name", async () => {
    const kernel = await bridge.connect();
    await loadModel(modelDir, { client: kernel, name: "kernel" });
    kernel.close();
    // The bridge hears of the close asynchronously: retry until it has.
    let reloaded: Model | undefined;
    for (let i = 0; i < 50 && !reloaded; i++) {
      reloaded = await loadModel(modelDir, { client: notebook, name: "kernel" }).catch(() =>
        sleep(100).then(() => undefined),
      );
    }
    expect(reloaded?.name).toBe("kernel");
  });
});
