/** Shared set-up for tests that talk to a real bridge: each test file gets its own bridge
 * directory and session, and shuts its bridges down afterwards. */
import { existsSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll } from "vitest";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { convertLlama2c } from "../cells-lib/cells/convert.ts";
import type { TrainingExample } from "../cells-lib/cells/train.ts";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";

export const repoRoot = path.resolve(import.meta.dirname, "..");
/** The shared data beside the checkout (GSM8K, MATH-500, the Qwen2 tokenizer): optional, so
 * tests that read it skip with a message where it is absent (see sharedPath). */
export const shared = path.resolve(repoRoot, "../shared");
/** The stories260K model the project ships (assets/, with its licence and provenance). */
export const stories = path.join(repoRoot, "assets/stories260K");

/** What llama2.c's run.c prints for stories260K from BOS in 200 greedy steps (test/fixtures/PROVENANCE.md). */
export const llama2cGreedy200 = path.join(repoRoot, "test/fixtures/llama2c-stories260K-greedy-200.txt");

/** `relative` inside ../shared, or undefined (with a message saying what is skipped) when
 * that file is absent: `it.skipIf(!file)` / `describe.skipIf(!file)` then skip the test. */
export function sharedPath(relative: string, what: string): string | undefined {
  const file = path.join(shared, relative);
  if (existsSync(file)) return file;
  console.warn(`skipped: ${what}: ${file} is absent (the shared data beside the checkout)`);
  return undefined;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `thinkcells-${prefix}-`));
}

/** A fresh bridge directory and a way to connect clients to it. */
export function testBridge(session: string) {
  const dir = tempDir(`bridge-${session}`);
  const clients: BridgeClient[] = [];
  return {
    dir,
    session,
    async connect(): Promise<BridgeClient> {
      const client = await BridgeClient.connect({ session, dir, idleTimeoutS: 60 });
      clients.push(client);
      return client;
    },
    async stop(): Promise<void> {
      const live = clients.find((c) => !c.closed);
      if (live) await live.shutdown().catch(() => {});
      for (const c of clients) c.close();
    },
  };
}

/** Converts the stories260K fixture into `dir`/stories260K through `client`'s bridge; returns that model directory. */
export async function convertStories(dir: string, client: BridgeClient): Promise<string> {
  const modelDir = path.join(dir, "stories260K");
  await convertLlama2c(path.join(stories, "stories260K.bin"), path.join(stories, "tok512.bin"), modelDir, client);
  return modelDir;
}

/** A tiny SFT set for `step`: prompt "a+b?" → completion " <think> a+b=c </think> c", loss on the completion only. */
export function additionExamples(tokenizer: Tokenizer, step: number): TrainingExample[] {
  return [0, 1, 2, 3].map((i) => {
    const a = (step * 7 + i * 3) % 50;
    const b = (step * 5 + i * 11) % 50;
    const prompt = tokenizer.encode(`${a}+${b}?`, { addSpecialTokens: true });
    const completion = tokenizer.encode(` <think> ${a}+${b}=${a + b} </think> ${a + b}`).concat(tokenizer.eosTokenId!);
    return { tokens: [...prompt, ...completion], weights: [...prompt.map(() => 0), ...completion.map(() => 1)] };
  });
}

/** A test file's own bridge with stories260K converted through it and its tokenizer, ready
 * before the file's tests and stopped after them. Read the fields inside tests. */
export function storiesSuite(name: string) {
  const suite = {
    bridge: testBridge(name),
    client: undefined as unknown as BridgeClient,
    modelDir: "",
    tokenizer: undefined as unknown as Tokenizer,
  };
  beforeAll(async () => {
    suite.client = await suite.bridge.connect();
    suite.modelDir = await convertStories(tempDir(name), suite.client);
    suite.tokenizer = await loadTokenizer(suite.modelDir);
  });
  afterAll(() => suite.bridge.stop());
  return suite;
}
