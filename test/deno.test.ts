import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { llama2cGreedy200, repoRoot, stories, tempDir } from "./helpers.ts";

const run = promisify(execFile);

describe("under Deno, the notebook kernel's runtime", () => {
  it("the same library converts, loads and samples stories260K exactly", async () => {
    const deno = path.join(repoRoot, "node_modules/.bin/deno");
    const work = tempDir("deno");
    const { stdout } = await run(
      deno,
      [
        "run",
        "-A",
        "test/fixtures/deno-sample.ts",
        path.join(work, "bridge"),
        path.join(stories, "stories260K.bin"),
        path.join(stories, "tok512.bin"),
        path.join(work, "model"),
      ],
      { cwd: repoRoot, env: { ...process.env, NO_COLOR: "1" } },
    );
    const result = JSON.parse(stdout) as { text: string; runtime: string };
    expect(result.runtime).toMatch(/^deno 2\./);
    expect(result.text).toBe(readFileSync(llama2cGreedy200, "utf8"));
  });
});
