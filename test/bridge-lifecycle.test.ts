import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { BridgeError } from "../cells-lib/bridge/errors.ts";
import { loadModel } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { loadTokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { convertStories, repoRoot, tempDir, testBridge } from "./helpers.ts";

const run = promisify(execFile);
const bridge = testBridge("lifecycle");
let modelDir: string;

beforeAll(async () => {
  const client = await bridge.connect();
  modelDir = await convertStories(tempDir("lifecycle"), client);
});
afterAll(() => bridge.stop());

describe("bridge lifecycle", () => {
  it("keeps its socket and token owner-only", () => {
    expect(statSync(bridge.dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(bridge.dir, "lifecycle.sock")).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(bridge.dir, "lifecycle.json")).mode & 0o777).toBe(0o600);
  });

  it("lets a restarted kernel reattach by session name and use the model still loaded", async () => {
    const first = await bridge.connect();
    const model = await loadModel(modelDir, { client: first, name: "kept" });
    const [mine] = await sample(model, await loadTokenizer(modelDir), "", { temperature: 0, maxNewTokens: 40 });
    first.close(); // the first "kernel" goes away; the bridge stays
    const tsx = path.join(repoRoot, "node_modules/.bin/tsx");
    const { stdout } = await run(tsx, [
      path.join(repoRoot, "test/fixtures/attach-and-sample.ts"),
      bridge.dir,
      bridge.session,
      "kept",
      modelDir,
    ]);
    const other = JSON.parse(stdout) as { pid: number; text: string };
    expect(other.pid).toBe(first.hello.pid);
    expect(other.text).toBe(mine!.text);
  });

  it("cancels a running request and stays usable", async () => {
    const client = await bridge.connect();
    const model = await loadModel(modelDir, { client });
    const tokenizer = await loadTokenizer(modelDir);
    const controller = new AbortController();
    const long = sample(model, tokenizer, "", {
      n: 64,
      maxNewTokens: 500,
      stopTokenIds: [],
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 300);
    const started = Date.now();
    const err = await long.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).kind).toBe("cancelled");
    expect(Date.now() - started).toBeLessThan(3000);
    const [after] = await sample(model, tokenizer, "", { temperature: 0, maxNewTokens: 5 });
    expect(after!.tokenIds).toHaveLength(5);
  });

  it("gives a typed error within seconds when the bridge is killed mid-request, then starts anew", async () => {
    const client = await bridge.connect();
    // Its own name: "default" is held by the previous test's client, still connected.
    const model = await loadModel(modelDir, { client, name: "killed" });
    const tokenizer = await loadTokenizer(modelDir);
    const pending = sample(model, tokenizer, "", { n: 64, maxNewTokens: 500, stopTokenIds: [] });
    await new Promise((r) => setTimeout(r, 300));
    process.kill(client.hello.pid, "SIGKILL");
    const started = Date.now();
    const err = await pending.catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).kind).toBe("crashed");
    expect((err as BridgeError).op).toBe("sample");
    // The next call on the dead connection fails at once, with the same kind.
    await expect(client.call("ping", {})).rejects.toMatchObject({ kind: "crashed" });
    // Connecting again starts a fresh bridge (the stale session file names a dead pid).
    const fresh = await bridge.connect();
    expect(fresh.hello.pid).not.toBe(client.hello.pid);
    await expect(fresh.call("status", {})).resolves.toMatchObject({ models: [] });
  });

  it("exits by itself after the idle timeout once no client is connected", async () => {
    const dir = tempDir("idle");
    const client = await BridgeClient.connect({ session: "idle", dir, idleTimeoutS: 1 });
    const pid = client.hello.pid;
    client.close();
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && existsSync(path.join(dir, "idle.sock")))
      await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(path.join(dir, "idle.sock"))).toBe(false);
    expect(existsSync(path.join(dir, "idle.json"))).toBe(false);
    // Gone, or a zombie waiting for this test process to reap it.
    const state = () =>
      existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]![0] : "gone";
    while (Date.now() < deadline && !["gone", "Z"].includes(state()!)) await new Promise((r) => setTimeout(r, 200));
    expect(["gone", "Z"]).toContain(state());
  });

  it("gives two kernels that start at the same moment one shared bridge", async () => {
    const dir = tempDir("race");
    const [a, b] = await Promise.all([
      BridgeClient.connect({ session: "race", dir, idleTimeoutS: 30 }),
      BridgeClient.connect({ session: "race", dir, idleTimeoutS: 30 }),
    ]);
    try {
      expect(a.hello.pid).toBe(b.hello.pid);
      await expect(b.call("ping", {})).resolves.toEqual({});
    } finally {
      await a.shutdown();
      b.close();
    }
  });

  it("refuses a client with the wrong token", async () => {
    const client = await bridge.connect();
    const { default: net } = await import("node:net");
    const { encodeFrame } = await import("../cells-lib/bridge/frames.ts");
    const socket = net.createConnection(path.join(bridge.dir, `${bridge.session}.sock`));
    const reply = await new Promise<string>((resolve) => {
      let data = "";
      socket.on("data", (d) => (data += d.toString("latin1")));
      socket.on("close", () => resolve(data));
      socket.write(
        encodeFrame(
          { id: 1, op: "hello", body: { token: "wrong", protocol_version: 1, client: "test" }, buffers: [] },
          Buffer.alloc(0),
        ),
      );
    });
    expect(reply).toMatch(/handshake failed/);
    await expect(client.call("ping", {})).resolves.toEqual({});
  });
});
