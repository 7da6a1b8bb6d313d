/** Which Python the bridge runs on, and what a user sees when that Python cannot run it. */
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { describe, expect, it } from "vitest";
import { BridgeClient, findPython } from "../cells-lib/bridge/client.ts";
import { BridgeError } from "../cells-lib/bridge/errors.ts";
import { projectVenv } from "../cells-lib/util/project-python.ts";
import { repoRoot, tempDir } from "./helpers.ts";

async function startError(python: string): Promise<BridgeError> {
  const err = await BridgeClient.connect({
    session: "env",
    dir: tempDir("bridge-env"),
    python,
    startTimeoutMs: 20_000,
  }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BridgeError);
  expect((err as BridgeError).kind).toBe("start_failed");
  return err as BridgeError;
}

describe("the bridge's Python", () => {
  it("is the project's .venv unless the option or THINKCELLS_PYTHON names another", () => {
    const saved = process.env.THINKCELLS_PYTHON;
    try {
      delete process.env.THINKCELLS_PYTHON;
      expect(findPython()).toBe(path.join(projectVenv, "bin", "python"));
      process.env.THINKCELLS_PYTHON = "/opt/cuda-venv/bin/python";
      expect(findPython()).toBe("/opt/cuda-venv/bin/python");
      expect(findPython("/usr/local/bin/python3.12")).toBe("/usr/local/bin/python3.12");
    } finally {
      if (saved === undefined) delete process.env.THINKCELLS_PYTHON;
      else process.env.THINKCELLS_PYTHON = saved;
    }
  });

  it("refuses an interpreter without the packages, naming each with its install command", async () => {
    // The project's Python without site-packages (-S): the standard library and nothing else.
    const bare = path.join(tempDir("bare-python"), "python");
    writeFileSync(bare, `#!/bin/sh\nexec ${path.join(projectVenv, "bin", "python")} -S "$@"\n`);
    chmodSync(bare, 0o755);
    const err = await startError(bare);
    expect(err.message).toContain("cannot run the thinkcells bridge:");
    const requirements = readFileSync(path.join(repoRoot, "gpu-bridge/requirements.txt"), "utf8");
    const torchPin = /^torch==(\S+)$/m.exec(requirements)![1];
    expect(err.message).toMatch(
      new RegExp(`- torch is not installed: \\S+ -m pip install 'torch==${torchPin!.replace(/[.+]/g, "\\$&")}'`),
    );
    for (const name of ["numpy", "safetensors", "huggingface_hub", "jsonschema"])
      expect(err.message).toContain(`- ${name} is not installed:`);
  });

  it("says which setting named an interpreter that does not exist", async () => {
    const err = await startError("/nonexistent/bin/python3");
    expect(err.message).toContain("cannot run /nonexistent/bin/python3 (the python option)");
  });
});
