import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { inspect } from "node:util";
import { ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { CheckpointError, CheckpointManager, type CheckpointStore, s3Store } from "../cells-lib/checkpoints/index.ts";
import { tempDir } from "./helpers.ts";
import { S3RVER_CREDENTIALS, startS3Server, type TestS3Server } from "./s3-server.ts";

let server: TestS3Server;
let raw: S3Client;
beforeAll(async () => {
  server = await startS3Server();
  raw = new S3Client({
    endpoint: server.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
});
afterAll(() => server.stop());
afterEach(() => {
  server.failWhen = undefined;
  vi.unstubAllEnvs();
});

let prefixes = 0;
/** A store under a fresh prefix, so tests never see each other's checkpoints. */
function store(options: Partial<Parameters<typeof s3Store>[0]> = {}): CheckpointStore & { prefix: string } {
  const prefix = `runs/test-${++prefixes}`;
  const s = s3Store({
    bucket: server.bucket,
    prefix,
    endpoint: server.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    ...options,
  });
  return Object.assign(s, { prefix });
}

async function keys(prefix: string): Promise<string[]> {
  const page = await raw.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: `${prefix}/` }));
  return (page.Contents ?? []).map((o) => o.Key!.slice(prefix.length + 1)).sort();
}

/** Files (path → content) written under a fresh directory, content as base64 for fast comparison. */
async function writeTree(files: Record<string, Buffer>): Promise<{ dir: string; tree: Map<string, string> }> {
  const dir = tempDir("ckpt-src");
  for (const [rel, bytes] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), bytes);
  }
  return { dir, tree: new Map(Object.entries(files).map(([rel, bytes]) => [rel, bytes.toString("base64")])) };
}

async function readTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const d of (await readdir(dir, { recursive: true, withFileTypes: true })).filter((d) => d.isFile())) {
    const full = path.join(d.parentPath, d.name);
    out.set(path.relative(dir, full).split(path.sep).join("/"), (await readFile(full)).toString("base64"));
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The requests for one object, as "METHOD ?query" with its upload id as ID. */
function uploadRequests(key: string): string[] {
  const prefix = `/${server.bucket}/${key}?`;
  return server.requests
    .map((r) => r.split(" ") as [string, string])
    .filter(([, url]) => decodeURIComponent(url).startsWith(prefix))
    .map(([method, url]) => `${method} ?${url.split("?")[1]!.replace(/uploadId=\w+/, "uploadId=ID")}`);
}

const freshDir = () => path.join(tempDir("ckpt-dst"), "restored");

describe("s3Store on a real S3-compatible server (s3rver)", () => {
  it("round-trips a nested directory, uploading large files in parts", async () => {
    const s = store({ partSizeMiB: 5 });
    const { dir, tree } = await writeTree({
      "adapter/model.safetensors": randomBytes(12 * 1024 * 1024 + 123),
      "optimizer/deep/state.bin": randomBytes(50_000),
      "rng.bin": Buffer.from([0, 255, 0, 10, 13]),
      "tokenizer files/vocab ü+1.json": Buffer.from('{"a": 1}'),
      empty: Buffer.alloc(0),
    });
    const saved = await s.put("step-000100", dir, { step: 100, metrics: { loss: 0.25 } });
    expect(saved.meta).toEqual({ step: 100, metrics: { loss: 0.25 } });
    expect(await keys(s.prefix)).toEqual([
      "step-000100/COMMIT.json",
      "step-000100/files/adapter/model.safetensors",
      "step-000100/files/empty",
      "step-000100/files/optimizer/deep/state.bin",
      "step-000100/files/rng.bin",
      "step-000100/files/tokenizer files/vocab ü+1.json",
    ]);
    // 12 MiB in 5 MiB parts: a three-part multipart upload (parts may arrive in any order); the
    // small files go up whole.
    const [create, ...rest] = uploadRequests(`${s.prefix}/step-000100/files/adapter/model.safetensors`);
    expect([create, rest.at(-1), ...rest.slice(0, -1).sort()]).toEqual([
      "POST ?uploads=",
      "POST ?uploadId=ID",
      "PUT ?partNumber=1&uploadId=ID&x-id=UploadPart",
      "PUT ?partNumber=2&uploadId=ID&x-id=UploadPart",
      "PUT ?partNumber=3&uploadId=ID&x-id=UploadPart",
    ]);
    expect(uploadRequests(`${s.prefix}/step-000100/files/optimizer/deep/state.bin`)).toEqual(["PUT ?x-id=PutObject"]);

    expect(await s.list()).toEqual([saved]);
    const out = freshDir();
    expect(await s.get("step-000100", out)).toEqual(saved);
    expect(await readTree(out)).toEqual(new Map([...tree].sort(([a], [b]) => (a < b ? -1 : 1))));
    expect(s.describe()).toBe(
      `s3://${server.bucket}/${s.prefix} at ${server.endpoint} in us-east-1 (given credentials)`,
    );

    await s.delete("step-000100");
    await s.delete("step-000100");
    expect(await s.list()).toEqual([]);
    expect(await keys(s.prefix)).toEqual([]);
  });

  it("verifies every download against COMMIT.json", async () => {
    const s = store();
    const { dir } = await writeTree({ "a.bin": randomBytes(1000), "b.bin": randomBytes(1000) });
    await s.put("ckpt", dir);
    await raw.send(
      new PutObjectCommand({ Bucket: server.bucket, Key: `${s.prefix}/ckpt/files/b.bin`, Body: randomBytes(1000) }),
    );
    const out = freshDir();
    await expect(s.get("ckpt", out)).rejects.toThrow(
      /b\.bin: expected 1000 bytes with sha256 \w+, got 1000 bytes with sha256 \w+; the stored checkpoint is damaged/,
    );
    expect(existsSync(out)).toBe(false);
    await expect(s.get("nothing", freshDir())).rejects.toThrow(
      `get "nothing" from ${s.describe()}: no such checkpoint`,
    );
  });

  it("leaves the previous checkpoint listed and loadable when an upload is interrupted midway", async () => {
    const s = store({ partSizeMiB: 5 });
    const first = await writeTree({ "a.bin": randomBytes(20_000), "b.bin": randomBytes(20_000) });
    await s.put("step-000001", first.dir, { step: 1 });

    // The connection drops on every upload after the first file of the next checkpoint: midway
    // through b.bin's multipart upload (its second part), and on c.bin.
    const second = await writeTree({
      "a.bin": randomBytes(20_000),
      "b.bin": randomBytes(6 * 1024 * 1024),
      "c.bin": randomBytes(20_000),
    });
    server.failWhen = (req) =>
      req.method === "PUT" && /\/step-000002\/files\/(b\.bin\?partNumber=2&|c\.bin)/.test(req.url ?? "");
    await expect(s.put("step-000002", second.dir, { step: 2 })).rejects.toThrow(CheckpointError);
    expect(await keys(s.prefix)).toContain("step-000002/files/a.bin");
    // The multipart upload was started, then aborted, so its stored parts go too.
    expect(uploadRequests(`${s.prefix}/step-000002/files/b.bin`)).toEqual(
      expect.arrayContaining(["POST ?uploads=", "DELETE ?uploadId=ID&x-id=AbortMultipartUpload"]),
    );
    expect((await s.list()).map((e) => e.name)).toEqual(["step-000001"]);
    const out = freshDir();
    await s.get("step-000001", out);
    expect(await readTree(out)).toEqual(first.tree);

    // The retry replaces the leftovers: nothing from the failed attempt survives.
    server.failWhen = undefined;
    const retry = await writeTree({ "c.bin": randomBytes(100) });
    await s.put("step-000002", retry.dir, { step: 2 });
    expect(await keys(s.prefix)).toEqual([
      "step-000001/COMMIT.json",
      "step-000001/files/a.bin",
      "step-000001/files/b.bin",
      "step-000002/COMMIT.json",
      "step-000002/files/c.bin",
    ]);
  });

  it("removes files of interrupted puts under other names, and replaces a committed name", async () => {
    const s = store();
    await raw.send(
      new PutObjectCommand({ Bucket: server.bucket, Key: `${s.prefix}/step-000007/files/half.bin`, Body: "partial" }),
    );
    await raw.send(new PutObjectCommand({ Bucket: server.bucket, Key: `${s.prefix}/notes.txt`, Body: "not ours" }));
    expect(await s.list()).toEqual([]);
    const one = await writeTree({ "x.bin": randomBytes(10), "y.bin": randomBytes(10) });
    await s.put("step-000008", one.dir, { v: 1 });
    const two = await writeTree({ "z.bin": randomBytes(10) });
    await s.put("step-000008", two.dir, { v: 2 });
    expect(await keys(s.prefix)).toEqual(["notes.txt", "step-000008/COMMIT.json", "step-000008/files/z.bin"]);
    expect((await s.list()).map((e) => e.meta)).toEqual([{ v: 2 }]);
  });

  it("keeps the best K through CheckpointManager", async () => {
    const s = store();
    const manager = new CheckpointManager({ store: s, keepBest: 2, metric: "evalLoss", mode: "min" });
    const trees = new Map<number, Map<string, string>>();
    for (const [i, loss] of [3, 1, 2, 0.5, 4].entries()) {
      const step = (i + 1) * 10;
      const { dir, tree } = await writeTree({ "state.bin": randomBytes(5000) });
      trees.set(step, tree);
      await manager.save(step, dir, { metrics: { evalLoss: loss } });
    }
    expect((await manager.list()).map((e) => e.meta.step)).toEqual([20, 40, 50]);
    expect((await keys(s.prefix)).filter((k) => k.endsWith("COMMIT.json"))).toEqual([
      "step-000020/COMMIT.json",
      "step-000040/COMMIT.json",
      "step-000050/COMMIT.json",
    ]);
    expect((await keys(s.prefix)).filter((k) => k.includes("step-000010") || k.includes("step-000030"))).toEqual([]);
    const best = freshDir();
    expect((await manager.restore("best", best)).name).toBe("step-000040");
    expect(await readTree(best)).toEqual(trees.get(40));
    const latest = freshDir();
    expect((await manager.restore("latest", latest)).name).toBe("step-000050");
    expect(await readTree(latest)).toEqual(trees.get(50));
  });

  it("never shows credentials in describe(), errors or the printed store", async () => {
    const MARKER = "SECRET-MARKER-4f1c9e2a";
    vi.stubEnv("AWS_ACCESS_KEY_ID", "S3RVER");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", MARKER);
    vi.stubEnv("AWS_SESSION_TOKEN", `${MARKER}-token`);
    vi.stubEnv("AWS_REGION", "us-east-1");
    vi.stubEnv("AWS_PROFILE", "");
    vi.stubEnv("AWS_EC2_METADATA_DISABLED", "true");
    const seen: string[] = [];
    const capture = async (work: Promise<unknown>) => {
      const err = await work.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CheckpointError);
      seen.push(
        String(err),
        (err as Error).stack ?? "",
        inspect(err, { depth: Infinity, showHidden: true }),
        JSON.stringify(err),
      );
    };
    const { dir } = await writeTree({ "a.bin": randomBytes(100), "b.bin": randomBytes(100) });

    // Credentials from the default chain (the environment), which s3rver accepts.
    const chain = s3Store({
      bucket: server.bucket,
      prefix: "secrets",
      endpoint: server.endpoint,
      forcePathStyle: true,
    });
    await chain.put("ok", dir);
    expect((await chain.list()).map((e) => e.name)).toEqual(["ok"]);
    await capture(chain.get("missing", freshDir()));
    await capture(chain.get("ok", path.join(dir, "..")));
    server.failWhen = (req) => req.method === "PUT";
    await capture(chain.put("fails", dir));
    server.failWhen = undefined;
    await capture(
      s3Store({ bucket: "no-such-bucket", prefix: "", endpoint: server.endpoint, forcePathStyle: true }).list(),
    );
    await capture(
      s3Store({ bucket: server.bucket, prefix: "x", endpoint: "http://127.0.0.1:9", forcePathStyle: true }).list(),
    );

    // Explicit credentials, including a provider whose own error quotes the secret.
    const explicit = {
      accessKeyId: "S3RVER",
      secretAccessKey: `${MARKER}-explicit`,
      sessionToken: `${MARKER}-explicit-token`,
    };
    const given = s3Store({
      bucket: server.bucket,
      prefix: "secrets2",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: explicit,
    });
    await capture(given.get("missing", freshDir()));
    const leaky = s3Store({
      bucket: server.bucket,
      prefix: "secrets3",
      endpoint: server.endpoint,
      forcePathStyle: true,
      credentials: async () => {
        throw new Error(`refusing key ${MARKER}`);
      },
    });
    await capture(leaky.list());
    expect(seen.at(-4)).toContain("refusing key [redacted]");

    // Bad options name the option, never its value.
    expect(() => s3Store({ bucket: "b", prefix: "", credentials: { accessKeyId: MARKER } as never })).toThrow(
      's3Store: option "credentials": expected { accessKeyId, secretAccessKey, sessionToken? } or a credentials provider function',
    );
    try {
      s3Store({ bucket: "b", prefix: "", credentials: { accessKeyId: MARKER, secretAccessKey: 7 } as never });
    } catch (err) {
      seen.push(String(err));
    }
    expect(() => s3Store({ bucket: "b", prefix: "", endpoint: `http://user:${MARKER}@127.0.0.1:1` })).toThrow(
      /must not contain credentials/,
    );
    expect(() => s3Store({ bucket: "b", prefix: "", endpoint: "127.0.0.1:9000" })).toThrow(
      's3Store: option "endpoint": expected an http(s) URL',
    );
    try {
      s3Store({ bucket: "b", prefix: "", endpoint: `http://user:${MARKER}@127.0.0.1:1` });
    } catch (err) {
      seen.push(String(err));
    }

    for (const s of [chain, given, leaky]) seen.push(s.describe(), inspect(s, { depth: Infinity, showHidden: true }));
    expect(seen.length).toBeGreaterThan(20);
    for (const text of seen) expect(text).not.toContain(MARKER);
    expect(given.describe()).toBe(`s3://${server.bucket}/secrets2 at ${server.endpoint} (given credentials)`);
    expect(chain.describe()).toBe(`s3://${server.bucket}/secrets at ${server.endpoint} (default credential chain)`);
  });
});
