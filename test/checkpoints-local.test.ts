import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { CheckpointError, type CheckpointStore, driveStore, localStore } from "../cells-lib/checkpoints/index.ts";
import { tempDir } from "./helpers.ts";

/** This whole file runs on a filesystem that, like Colab's Drive mount, refuses to rename onto an
 * existing path, and can be told to fail the next rename to a given destination. */
const fsFaults = vi.hoisted(() => ({ failRenameTo: undefined as string | undefined }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs/promises")>();
  const { existsSync } = await import("node:fs");
  const rename = async (from: string, to: string) => {
    if (existsSync(to)) throw Object.assign(new Error(`EEXIST: rename onto the existing ${to}`), { code: "EEXIST" });
    if (to === fsFaults.failRenameTo) {
      fsFaults.failRenameTo = undefined;
      throw Object.assign(new Error(`EIO: injected failure renaming to ${to}`), { code: "EIO" });
    }
    return fs.rename(from, to);
  };
  return { ...fs, rename, default: { ...fs, rename } };
});

/** A nested checkpoint-like tree with binary files; returns path → base64 bytes (vitest compares
 * strings far faster than large Buffers). */
async function writeTree(dir: string, seed: string): Promise<Map<string, string>> {
  const files = new Map<string, Buffer>([
    ["adapter/weights.safetensors", randomBytes(300_000)],
    ["optimizer/state/moments.bin", randomBytes(70_000)],
    ["rng.bin", Buffer.from([0, 255, 13, 10, 0, 1])],
    ["empty", Buffer.alloc(0)],
    ["tokenizer files/vocab ü+1.json", Buffer.from('{"a": 1}')],
    ["trainer.json", Buffer.from(JSON.stringify({ seed, cursor: 42 }))],
  ]);
  for (const [rel, bytes] of files) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), bytes);
  }
  return new Map([...files].map(([rel, bytes]) => [rel, bytes.toString("base64")]));
}

async function readTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of (await readdir(dir, { recursive: true, withFileTypes: true })).filter((d) => d.isFile())) {
    const full = path.join(rel.parentPath, rel.name);
    out.set(path.relative(dir, full).split(path.sep).join("/"), (await readFile(full)).toString("base64"));
  }
  return out;
}

describe.each([
  ["localStore", (root: string) => localStore(root)],
  ["driveStore", (root: string) => driveStore(root)],
] as const)("%s", (kind, makeStore: (root: string) => CheckpointStore) => {
  it("round-trips a nested directory of binary files, with its metadata", async () => {
    const root = path.join(tempDir("ckpt-store"), "checkpoints");
    const store = makeStore(root);
    const source = tempDir("ckpt-src");
    const files = await writeTree(source, "a");

    const before = Date.now();
    const saved = await store.put("step-000010", source, {
      step: 10,
      metrics: { loss: 1.5, acc: Number.NaN },
      note: undefined,
    });
    expect(saved.meta).toEqual({ step: 10, metrics: { loss: 1.5, acc: null } });
    expect(saved.createdAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(await store.list()).toEqual([saved]);
    // The checkpoint is a plain directory: the files plus the commit record.
    expect([...(await readTree(path.join(root, "step-000010"))).keys()].sort()).toEqual(
      [".checkpoint.json", ...files.keys()].sort(),
    );

    const restored = path.join(tempDir("ckpt-dst"), "restored");
    expect(await store.get("step-000010", restored)).toEqual(saved);
    expect(await readTree(restored)).toEqual(files);
    expect(store.describe()).toBe(`${kind === "driveStore" ? "Google Drive folder" : "local directory"} ${root}`);
  });

  it("replaces an existing checkpoint without ever renaming onto an existing path", async () => {
    const root = tempDir("ckpt-store");
    const store = makeStore(root);
    const first = tempDir("ckpt-src");
    await writeTree(first, "first");
    await store.put("step-000001", first, { version: 1 });
    const second = tempDir("ckpt-src");
    const files = await writeTree(second, "second");
    await store.put("step-000001", second, { version: 2 });

    expect((await store.list()).map((e) => e.meta)).toEqual([{ version: 2 }]);
    const out = tempDir("ckpt-dst");
    await store.get("step-000001", out);
    expect(await readTree(out)).toEqual(files);
    expect(await readdir(root)).toEqual(["step-000001"]);
  });

  it("keeps the previous checkpoint when the commit fails, and leaves nothing behind", async () => {
    const root = tempDir("ckpt-store");
    const store = makeStore(root);
    const source = tempDir("ckpt-src");
    const files = await writeTree(source, "old");
    await store.put("step-000001", source, { version: 1 });
    await writeTree(source, "new");

    fsFaults.failRenameTo = path.join(root, "step-000001");
    await expect(store.put("step-000001", source, { version: 2 })).rejects.toThrow(/injected failure/);
    expect(await readdir(root)).toEqual(["step-000001"]);
    expect((await store.list()).map((e) => e.meta)).toEqual([{ version: 1 }]);
    const out = tempDir("ckpt-dst");
    await store.get("step-000001", out);
    expect(await readTree(out)).toEqual(files);
  });

  it("ignores what a crashed put left behind, and the next put removes it", async () => {
    const root = tempDir("ckpt-store");
    const store = makeStore(root);
    // A crash mid-copy leaves a temporary directory; a crash while replacing leaves an old one.
    await writeTree(path.join(root, ".tmp-step-000002-123-abcd"), "crashed");
    await writeFile(path.join(root, ".tmp-step-000002-123-abcd", ".checkpoint.json"), "{");
    await writeTree(path.join(root, ".old-step-000001-123-abcd"), "replaced");
    await writeTree(path.join(root, "not-a-checkpoint"), "stray");
    expect(await store.list()).toEqual([]);
    await expect(store.get("not-a-checkpoint", tempDir("ckpt-dst"))).rejects.toThrow(/no such checkpoint/);

    const source = tempDir("ckpt-src");
    await writeTree(source, "x");
    await store.put("step-000003", source);
    expect((await readdir(root)).sort()).toEqual(["not-a-checkpoint", "step-000003"]);
    expect((await store.list()).map((e) => e.name)).toEqual(["step-000003"]);
  });

  it("deletes checkpoints, and treats deleting a missing one as done", async () => {
    const root = tempDir("ckpt-store");
    const store = makeStore(root);
    const source = tempDir("ckpt-src");
    await writeTree(source, "x");
    await store.put("a", source);
    await store.put("b", source);
    await store.delete("a");
    await store.delete("a");
    expect((await store.list()).map((e) => e.name)).toEqual(["b"]);
    expect(await readdir(root)).toEqual(["b"]);
  });
});

describe("file stores", () => {
  it("restores only into a missing or empty directory, all or nothing", async () => {
    const root = tempDir("ckpt-store");
    const store = localStore(root);
    const source = tempDir("ckpt-src");
    const files = await writeTree(source, "x");
    await store.put("ckpt", source);

    const empty = tempDir("ckpt-dst");
    await store.get("ckpt", empty);
    expect(await readTree(empty)).toEqual(files);
    await expect(store.get("ckpt", empty)).rejects.toThrow(
      `get "ckpt" from local directory ${root}: ${empty} is not empty`,
    );

    // A damaged file fails the whole restore, and the target never appears.
    const weights = path.join(root, "ckpt", "adapter/weights.safetensors");
    const bytes = await readFile(weights);
    bytes[1000] = bytes[1000]! ^ 1;
    await writeFile(weights, bytes);
    const target = path.join(tempDir("ckpt-dst"), "restore");
    await expect(store.get("ckpt", target)).rejects.toThrow(
      /adapter\/weights\.safetensors: expected 300000 bytes with sha256 .* the stored checkpoint is damaged/,
    );
    expect(existsSync(target)).toBe(false);
    expect(await readdir(path.dirname(target))).toEqual([]);
  });

  it("rejects bad names, metadata and sources", async () => {
    const store = localStore(tempDir("ckpt-store"));
    const source = tempDir("ckpt-src");
    await writeTree(source, "x");
    for (const name of ["", ".hidden", "a/b", "../up", "x".repeat(129)]) {
      await expect(store.put(name, source)).rejects.toThrow(CheckpointError);
    }
    await expect(store.put("ok", source, [] as never)).rejects.toThrow(/meta must be a JSON object/);
    await expect(store.put("ok", source, { n: 1n })).rejects.toThrow(/meta must be JSON-serialisable/);
    await expect(store.put("ok", tempDir("ckpt-empty"))).rejects.toThrow(/has no files to checkpoint/);
    await expect(store.put("ok", path.join(source, "missing"))).rejects.toThrow(/is not a directory/);
    await writeFile(path.join(source, ".checkpoint.json"), "{}");
    await expect(store.put("ok", source)).rejects.toThrow(/\.checkpoint\.json is reserved/);
    expect(await store.list()).toEqual([]);
    expect(() => localStore("")).toThrow(/localStore/);
  });

  it("driveStore refuses to create folders above its own (Drive not mounted)", async () => {
    const unmounted = path.join(tempDir("ckpt-drive"), "drive", "MyDrive", "runs");
    expect(() => driveStore(unmounted)).toThrow(/drive[/\\]MyDrive does not exist\. Is Google Drive mounted/);

    // Mounted at creation, gone later (Colab's Drive can time out): puts fail instead of writing to the VM's disk.
    const mount = path.join(tempDir("ckpt-drive"), "MyDrive");
    await mkdir(mount);
    const store = driveStore(path.join(mount, "runs"));
    const { rm } = await import("node:fs/promises");
    await rm(mount, { recursive: true });
    const source = tempDir("ckpt-src");
    await writeTree(source, "x");
    await expect(store.put("step-000001", source)).rejects.toThrow(/Is Google Drive mounted/);
    expect(existsSync(mount)).toBe(false);
  });
});
