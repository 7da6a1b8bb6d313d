import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { convertStories, repoRoot, tempDir, testBridge } from "./helpers.ts";

const bridge = testBridge("eval-cli");
afterAll(() => bridge.stop());

function thinkcells(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(repoRoot, "bin/thinkcells.mjs"), ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("thinkcells eval", () => {
  it("prints the metrics as JSON for RL and GSM8K rows, and names files it cannot use", async () => {
    const dir = tempDir("eval-cli");
    const model = await convertStories(dir, await bridge.connect());
    const rl = path.join(dir, "rl.jsonl");
    writeFileSync(
      rl,
      ['{"prompt":"2+3?","answer":"5"}', '{"prompt":"4+4?","answer":"8"}', '{"prompt":"1+1?","answer":"2"}'].join("\n"),
    );
    const gsm = path.join(dir, "gsm.jsonl");
    writeFileSync(
      gsm,
      '{"question":"Tom has 2 apples and gets 3 more. How many?","answer":"2+3=<<2+3=5>>5\\n#### 5"}\n',
    );
    const env = { THINKCELLS_BRIDGE_DIR: bridge.dir, THINKCELLS_SESSION: bridge.session };

    const run = await thinkcells(
      ["eval", model, "--data", rl, "--limit", "2", "--max-new-tokens", "8", "--samples", "2", "--temperature", "1"],
      env,
    );
    expect(run.code, run.stderr).toBe(0);
    const metrics = JSON.parse(run.stdout);
    expect(metrics).toMatchObject({ rows: 2, samples: 2, accuracy: 0, formatAccuracy: 0 });
    expect(Object.keys(metrics.passAtK)).toEqual(["pass@1", "pass@2"]);

    const onGsm = await thinkcells(["eval", model, "--data", gsm, "--max-new-tokens", "4"], env);
    expect(JSON.parse(onGsm.stdout)).toMatchObject({ rows: 1, samples: 1 });

    const prefs = path.join(dir, "prefs.jsonl");
    writeFileSync(prefs, '{"prompt":"p","chosen":"a","rejected":"b"}\n');
    const bad = await thinkcells(["eval", model, "--data", prefs], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${prefs}: evaluation needs rows with a reference answer`);
  }, 120_000);
});
