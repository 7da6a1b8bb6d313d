import { createHash, randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { inspect } from "node:util";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { RecordingRenderer, setRenderer } from "../cells-lib/display/index.ts";
import { HubError, type PushOptions, type PushProgress, pushToHub } from "../cells-lib/hub/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { tempDir } from "./helpers.ts";
import { LFS_THRESHOLD, type MockHub, startMockHub } from "./mock-hub.ts";

/** The token the mock hub accepts; a marker that must never show up in any output. */
const TOKEN = `hf_MARKER${randomBytes(12).toString("hex")}`;
const WRONG_TOKEN = `hf_WRONGMARKER${randomBytes(12).toString("hex")}`;

let hub: MockHub;
let terminal: string[];
beforeAll(async () => {
  hub = await startMockHub(TOKEN);
});
const folders: string[] = [];
afterAll(async () => {
  await hub.stop();
  // Each run writes some 40 MB of weights.
  await Promise.all(folders.map((dir) => rm(dir, { recursive: true, force: true })));
});
beforeEach(() => {
  // Progress bars drawn as on a terminal into `terminal`, where the token checks can see them.
  terminal = [];
  setRenderer(new RecordingRenderer({ isTTY: false, write: (text) => terminal.push(text) }));
  for (const name of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"]) vi.stubEnv(name, "");
});
afterEach(() => {
  setRenderer(undefined);
  hub.intercept = undefined;
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

/** A safetensors file: 8-byte little-endian header length, JSON header, then the tensor bytes. */
function safetensors(floats: number): Buffer {
  const header = Buffer.from(
    JSON.stringify({ weight: { dtype: "F32", shape: [floats], data_offsets: [0, floats * 4] } }),
  );
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, header, randomBytes(floats * 4)]);
}

async function writeFolder(files: Record<string, Buffer | string>): Promise<string> {
  const dir = tempDir("hub-push");
  folders.push(dir);
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
  return dir;
}

const modelFiles = () => ({
  "config.json": JSON.stringify({ model_type: "llama", hidden_size: 64 }),
  "README.md": "# tiny\n\nTrained with thinkcells.\n",
  // Over the LFS threshold: hashed, sent to LFS storage, committed as a pointer.
  "model.safetensors": safetensors(Math.ceil(LFS_THRESHOLD / 4) + 1000),
  "tokenizer/tokenizer.json": JSON.stringify({ version: "1.0", vocab: { a: 0, b: 1 } }),
  // Small but binary: LFS too. Six folders deep.
  "a/b/c/d/e/f/rng.bin": Buffer.from([0, 1, 2, 255, 0, 13, 10]),
  "empty.txt": "",
});

/** path → sha256 of the content: byte-identical checks without deep-comparing 10 MB buffers. */
const digests = (files: Iterable<[string, Buffer | string]>) =>
  new Map(
    [...files]
      .map(([p, c]) => [p, createHash("sha256").update(c).digest("hex")] as const)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
const push = (dir: string, repoId: string, options: PushOptions = {}) =>
  pushToHub(dir, repoId, { token: TOKEN, endpoint: hub.url, ...options });

describe("pushToHub against a mock Hub", () => {
  it("creates the repo and commits every file byte for byte, large and binary ones through LFS", async () => {
    const files = modelFiles();
    const dir = await writeFolder(files);
    const events: PushProgress[] = [];
    const result = await push(dir, "tester/tiny", { private: true, onProgress: (p) => events.push(p) });

    const totalBytes = Object.values(files).reduce((n, c) => n + Buffer.byteLength(c), 0);
    expect(result).toEqual({
      repoUrl: `${hub.url}/tester/tiny`,
      commitUrl: `${hub.url}/tester/tiny/commit/${result.commitOid}`,
      commitOid: expect.stringMatching(/^[0-9a-f]{40}$/),
      created: true,
      files: 6,
      bytes: totalBytes,
    });
    expect(digests(hub.files("models/tester/tiny"))).toEqual(digests(Object.entries(files)));
    const stored = hub.repos.get("models/tester/tiny")!;
    expect(stored.visibility).toBe("private");
    const lfs = [...stored.branches.get("main")!.files].filter(([, f]) => f.lfs).map(([p]) => p);
    expect(lfs.sort()).toEqual(["a/b/c/d/e/f/rng.bin", "model.safetensors"]);
    expect(stored.branches.get("main")!.commits.at(-1)!.title).toBe("Upload 6 files with thinkcells");
    expect(hub.requests.filter((r) => r.startsWith("PUT /lfs-upload/"))).toHaveLength(2);

    // Progress: counts only grow, every phase shows up, and the last event accounts for everything.
    expect(new Set(events.map((e) => e.phase))).toEqual(
      new Set(["creating", "preparing", "hashing", "uploading", "committing", "done"]),
    );
    expect(events.at(-1)).toEqual({
      phase: "done",
      filesDone: 6,
      filesTotal: 6,
      bytesDone: totalBytes,
      bytesTotal: totalBytes,
    });
    for (const [a, b] of events.slice(1).map((e, i) => [events[i]!, e] as const)) {
      expect(b.filesDone).toBeGreaterThanOrEqual(a.filesDone);
      expect(b.bytesDone).toBeGreaterThanOrEqual(a.bytesDone);
    }
    expect(events.some((e) => e.phase === "hashing" && e.file?.path === "model.safetensors")).toBe(true);
    // The bar was drawn (as on a terminal) and ended complete.
    expect(terminal.at(-1)).toMatch(/^push tester\/tiny {2}6\/6 {2}100% .*sent=10\.5 MB of 10\.5 MB step=done\n$/);
  });

  it("pushes again to a repo that exists, without re-uploading LFS objects the Hub has", async () => {
    const files = modelFiles();
    const dir = await writeFolder(files);
    expect((await push(dir, "tester/again")).created).toBe(true);
    const putsBefore = hub.requests.filter((r) => r.startsWith("PUT")).length;

    const changed = { ...files, "config.json": JSON.stringify({ model_type: "llama", hidden_size: 128 }) };
    await writeFile(path.join(dir, "config.json"), changed["config.json"]);
    const second = await push(dir, "tester/again", { commitMessage: "Step 200" });

    expect(second.created).toBe(false);
    expect(digests(hub.files("models/tester/again"))).toEqual(digests(Object.entries(changed)));
    expect(
      hub.repos
        .get("models/tester/again")!
        .branches.get("main")!
        .commits.map((c) => c.title),
    ).toEqual(["initial commit", "Upload 6 files with thinkcells", "Step 200"]);
    expect(hub.requests.filter((r) => r.startsWith("PUT")).length).toBe(putsBefore);
  });

  it("pushes to an existing repo with a token that may not create repos, and says when it lacks access", async () => {
    const dir = await writeFolder({ "a.txt": "a" });
    await push(dir, "org/shared");
    // As the Hub answers a fine-grained token without the right to create repos in "org".
    hub.intercept = (req) =>
      req.url === "/api/repos/create"
        ? { status: 403, body: { error: 'You don\'t have the rights to create a model under the namespace "org"' } }
        : undefined;
    await writeFile(path.join(dir, "a.txt"), "b");
    expect((await push(dir, "org/shared")).created).toBe(false);
    expect(hub.files("models/org/shared").get("a.txt")!.toString()).toBe("b");
    await expect(push(dir, "org/new")).rejects.toThrow(
      /HTTP 403: You don't have the rights .*\(the token from option token needs write access to this repo\)$/,
    );
  });

  it("commits to a revision, creating the branch from main, and pushes dataset repos", async () => {
    const dir = await writeFolder({ "train.jsonl": '{"q":"1+1","a":"2"}\n' });
    await push(dir, "tester/branched");
    await writeFile(path.join(dir, "train.jsonl"), '{"q":"2+2","a":"4"}\n');
    await push(dir, "tester/branched", { revision: "dev" });
    await push(dir, "tester/branched", { revision: "dev" }); // the branch exists now

    expect(hub.files("models/tester/branched", "main").get("train.jsonl")!.toString()).toContain("1+1");
    expect(hub.files("models/tester/branched", "dev").get("train.jsonl")!.toString()).toContain("2+2");

    const data = await writeFolder({ "data/train.bin": randomBytes(LFS_THRESHOLD + 1), "README.md": "# data\n" });
    const result = await push(data, "datasets/tester/numbers");
    expect(result.repoUrl).toBe(`${hub.url}/datasets/tester/numbers`);
    expect(hub.repos.get("datasets/tester/numbers")!.branches.get("main")!.files.get("data/train.bin")!.lfs).toBe(true);
  });

  it("reads the token from HF_TOKEN, then HUGGING_FACE_HUB_TOKEN, and the Hub URL from HF_ENDPOINT", async () => {
    const dir = await writeFolder({ "a.txt": "a" });
    vi.stubEnv("HF_ENDPOINT", `${hub.url}/`);
    vi.stubEnv("HUGGING_FACE_HUB_TOKEN", TOKEN);
    expect((await pushToHub(dir, "tester/env-old")).repoUrl).toBe(`${hub.url}/tester/env-old`);
    vi.stubEnv("HF_TOKEN", TOKEN);
    vi.stubEnv("HUGGING_FACE_HUB_TOKEN", WRONG_TOKEN); // HF_TOKEN wins
    expect((await pushToHub(dir, "tester/env-new")).created).toBe(true);
  });

  it("fails clearly, before any request, on a missing token, a bad repo id, folder or endpoint", async () => {
    const dir = await writeFolder({ "a.txt": "a" });
    const requests = hub.requests.length;
    const fails = (p: Promise<unknown>, message: string | RegExp) =>
      expect(p).rejects.toThrow(
        expect.objectContaining({
          name: "HubError",
          message: typeof message === "string" ? expect.stringContaining(message) : expect.stringMatching(message),
        }),
      );

    await fails(pushToHub(dir, "tester/x", { endpoint: hub.url }), /^pushToHub: no Hugging Face token: set HF_TOKEN/);
    vi.stubEnv("HF_TOKEN", "not-a-token");
    await fails(
      pushToHub(dir, "tester/x", { endpoint: hub.url }),
      /the token from HF_TOKEN is not a Hugging Face token \(those start with "hf_"\)/,
    );

    for (const bad of [
      "tiny",
      "a/b/c",
      "tester/",
      "tester/bad name",
      "tester/-x",
      "tester/a--b",
      "tester/a..b",
      "tester/x.git",
      "models/tester/x",
      `tester/${"x".repeat(97)}`,
    ]) {
      await fails(push(dir, bad), `repo id ${JSON.stringify(bad)} is not valid: expected "namespace/name"`);
    }
    await fails(push(path.join(dir, "missing"), "tester/x"), /folder .*missing does not exist/);
    await fails(push(path.join(dir, "a.txt"), "tester/x"), /a\.txt is not a folder/);
    await fails(push(tempDir("hub-empty"), "tester/x"), /has no files to push/);
    await fails(
      push(dir, "tester/x", { endpoint: "ftp://example.com" }),
      'option endpoint must be an http(s) URL, got "ftp://example.com"',
    );
    vi.stubEnv("HF_ENDPOINT", "huggingface.co");
    await fails(pushToHub(dir, "tester/x", { token: TOKEN }), 'HF_ENDPOINT "huggingface.co" is not a URL');
    await expect(push(dir, "tester/x", { privat: true } as PushOptions)).rejects.toThrow(OptionsError);
    expect(hub.requests.length).toBe(requests);
  });

  it("names the token's source when the Hub refuses it, without quoting it", async () => {
    const dir = await writeFolder({ "a.txt": "a" });
    vi.stubEnv("HF_TOKEN", WRONG_TOKEN);
    const err = await pushToHub(dir, "tester/refused", { endpoint: hub.url }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(
      new RegExp(
        String.raw`^pushToHub: creating repo tester\/refused failed: HTTP 401: Invalid credentials in Authorization header\. URL: .*` +
          String.raw`\(the Hub refused the token from HF_TOKEN: is it a current token\?\)$`,
      ),
    );
    expect(inspect(err)).not.toContain(WRONG_TOKEN);
    expect(hub.repos.has("models/tester/refused")).toBe(false);
  });

  it("reports an unreachable Hub with the network error", async () => {
    const dir = await writeFolder({ "a.txt": "a" });
    const closed = await startMockHub(TOKEN);
    await closed.stop();
    await expect(push(dir, "tester/x", { endpoint: closed.url })).rejects.toThrow(
      /creating repo tester\/x failed: TypeError: fetch failed \(.*ECONNREFUSED/,
    );
  });

  it("never lets the token into errors, logs, progress or notebook output", async () => {
    const seen: string[] = [];
    const capture = (stream: NodeJS.WriteStream) =>
      vi.spyOn(stream, "write").mockImplementation((chunk: unknown) => {
        seen.push(String(chunk));
        return true;
      });
    capture(process.stdout);
    capture(process.stderr);
    for (const level of ["log", "info", "warn", "error", "debug"] as const)
      vi.spyOn(console, level).mockImplementation((...args) => void seen.push(inspect(args)));
    const notebook = new RecordingRenderer(); // a notebook front end: bars as display updates
    setRenderer(notebook);

    const dir = await writeFolder(modelFiles());
    const events: PushProgress[] = [];
    seen.push(JSON.stringify(await push(dir, "tester/secret", { onProgress: (p) => events.push(p) })));

    // A proxy or server that echoes the request's Authorization header into its error.
    hub.intercept = (req) =>
      req.url?.includes("/commit/")
        ? { status: 500, body: { error: `internal error for ${req.headers.authorization}` } }
        : undefined;
    const err = await push(dir, "tester/secret", { onProgress: (p) => events.push(p) }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(
      /^pushToHub: uploading to tester\/secret failed: HTTP 500: internal error for Bearer \[redacted\]/,
    );
    seen.push(inspect(err), String((err as Error).stack));

    seen.push(JSON.stringify(events), JSON.stringify(notebook.outputs), ...terminal);
    expect(notebook.outputs.length).toBeGreaterThan(0);
    expect(seen.join("\n")).not.toContain(TOKEN);
    expect(seen.join("\n")).not.toContain(TOKEN.slice(3)); // nor without its prefix
  });
});
