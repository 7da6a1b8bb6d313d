import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CheckpointError, CheckpointManager, localStore, stepName } from "../cells-lib/checkpoints/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { tempDir } from "./helpers.ts";

/** A one-file staging directory whose content names the step. */
async function staged(step: number): Promise<string> {
  const dir = tempDir("ckpt-stage");
  await writeFile(path.join(dir, "state.bin"), `weights at step ${step}`);
  return dir;
}

async function restoredStep(manager: CheckpointManager, which: string): Promise<string> {
  const dir = path.join(tempDir("ckpt-restore"), "state");
  await manager.restore(which, dir);
  return readFile(path.join(dir, "state.bin"), "utf8");
}

describe("CheckpointManager", () => {
  it("saves step-named checkpoints and keeps the best K plus the latest", async () => {
    const manager = new CheckpointManager({
      store: localStore(tempDir("ckpt-store")),
      keepBest: 2,
      metric: "evalLoss",
      mode: "min",
    });
    const losses = [3, 1, 2, 0.5, 4];
    const pruned: string[][] = [];
    for (const [i, loss] of losses.entries()) {
      const step = (i + 1) * 10;
      const result = await manager.save(step, await staged(step), { metrics: { evalLoss: loss }, cursor: i });
      expect(result.saved).toMatchObject({
        name: stepName(step),
        meta: { step, metrics: { evalLoss: loss }, cursor: i },
      });
      pruned.push(result.pruned);
    }
    expect(pruned).toEqual([[], [], ["step-000010"], ["step-000030"], []]);
    expect((await manager.list()).map((e) => e.name)).toEqual(["step-000020", "step-000040", "step-000050"]);
    expect((await manager.latest())?.name).toBe("step-000050");
    expect((await manager.best())?.name).toBe("step-000040");
    expect(await restoredStep(manager, "best")).toBe("weights at step 40");
    expect(await restoredStep(manager, "latest")).toBe("weights at step 50");
    expect(await restoredStep(manager, "step-000020")).toBe("weights at step 20");
  });

  it("keeps the keepLast most recent, and leaves other names in the store alone", async () => {
    const store = localStore(tempDir("ckpt-store"));
    await store.put("final", await staged(0));
    const manager = new CheckpointManager({ store, keepLast: 2 });
    for (const step of [1, 2, 3]) await manager.save(step, await staged(step));
    expect((await store.list()).map((e) => e.name)).toEqual(["final", "step-000002", "step-000003"]);
    expect((await manager.list()).map((e) => e.name)).toEqual(["step-000002", "step-000003"]);
    await expect(manager.best()).rejects.toThrow("CheckpointManager.best: no metric was configured");
  });

  it("never prunes when the save fails", async () => {
    const manager = new CheckpointManager({ store: localStore(tempDir("ckpt-store")) });
    await manager.save(1, await staged(1));
    await expect(manager.save(2, path.join(tempDir("ckpt-stage"), "missing"))).rejects.toThrow(CheckpointError);
    expect((await manager.list()).map((e) => e.name)).toEqual(["step-000001"]);
  });

  it("explains what cannot be restored", async () => {
    const store = localStore(tempDir("ckpt-store"));
    const manager = new CheckpointManager({ store, metric: "acc", mode: "max" });
    await expect(manager.restore("latest", tempDir("ckpt-restore"))).rejects.toThrow(
      `CheckpointManager.restore("latest"): no checkpoints in ${store.describe()}`,
    );
    await manager.save(5, await staged(5), { metrics: { acc: Number.NaN } });
    expect(await manager.best()).toBeUndefined();
    await expect(manager.restore("best", tempDir("ckpt-restore"))).rejects.toThrow(/no checkpoint has a value for acc/);
    const target = path.join(tempDir("ckpt-restore"), "x");
    await expect(manager.restore("step-000099", target)).rejects.toThrow(/no such checkpoint/);
    expect(existsSync(target)).toBe(false);
  });

  it("validates its options and steps", async () => {
    const store = localStore(tempDir("ckpt-store"));
    expect(() => new CheckpointManager({ store, keepBest: 2 })).toThrow(OptionsError);
    expect(() => new CheckpointManager({ store, metric: "loss" })).toThrow(/option "mode"/);
    expect(() => new CheckpointManager({ store: {} as never })).toThrow(/option "store": expected a checkpoint store/);
    const manager = new CheckpointManager({ store });
    await expect(manager.save(-1, tempDir("ckpt-stage"))).rejects.toThrow(
      "step must be a non-negative integer, got -1",
    );
    await expect(manager.save(1.5, tempDir("ckpt-stage"))).rejects.toThrow(/non-negative integer/);
  });
});
