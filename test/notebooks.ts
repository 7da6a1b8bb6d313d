/** Runs walkthrough notebooks headless with small parameters, each against its own bridge, and
 * fails on any cell error (issue: CI executes every notebook). */
import path from "node:path";
import process from "node:process";
import { expect } from "vitest";
import { BridgeClient } from "../cells-lib/bridge/client.ts";
import { describeFailure, type RunOptions, type RunResult, runNotebook } from "../kernel/run.ts";
import { repoRoot, tempDir } from "./helpers.ts";

/** Runs `file` headless against a bridge of its own (session `session`, in `dir`/bridge), fails
 * the test on a cell error, and stops that bridge afterwards. */
export async function runWithOwnBridge(
  file: string,
  dir: string,
  session: string,
  options: RunOptions,
): Promise<RunResult> {
  // The kernel (a child of jupyter-server) inherits these: its bridge is this test's own.
  process.env.THINKCELLS_BRIDGE_DIR = path.join(dir, "bridge");
  process.env.THINKCELLS_SESSION = session;
  try {
    const result = await runNotebook(file, options);
    expect(result.failure ? describeFailure(file, result.failure) : "ok").toBe("ok");
    return result;
  } finally {
    const client = await BridgeClient.connect({ session, dir: path.join(dir, "bridge"), start: false }).catch(
      () => undefined,
    );
    await client?.shutdown().catch(() => {});
  }
}

export async function runWalkthrough(
  name: string,
  parameters: Record<string, string | number>,
): Promise<Record<string, unknown>[]> {
  const dir = tempDir(`nb-${name}`);
  const result = await runWithOwnBridge(path.join(repoRoot, "notebooks", `${name}.ipynb`), dir, `nb-${name}`, {
    parameters: new Map(
      Object.entries({ modelDir: path.join(dir, "stories260K"), ...parameters }).map(([k, v]) => [k, String(v)]),
    ),
    out: path.join(dir, "executed.ipynb"),
    // Below the test's own limit, so a stuck cell is reported with its notebook and cell.
    timeoutS: 240,
  });
  return result.notebook.cells.flatMap((c) => (c.outputs ?? []) as unknown as Record<string, unknown>[]);
}
