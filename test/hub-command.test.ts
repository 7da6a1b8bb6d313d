import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, expect, it, vi } from "vitest";
import { setRenderer } from "../cells-lib/display/index.ts";
import { pushCommand, PushUsageError } from "../cells-lib/hub/index.ts";
import { tempDir } from "./helpers.ts";
import { startMockHub, type MockHub } from "./mock-hub.ts";

const TOKEN = `hf_MARKER${randomBytes(12).toString("hex")}`;

let hub: MockHub;
beforeAll(async () => {
  hub = await startMockHub(TOKEN);
  setRenderer(undefined); // the renderer a CLI gets: the terminal, bars on stderr
});
afterAll(() => hub.stop());
afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

/** Runs the command with HF_TOKEN set, capturing what it writes to stdout and stderr. */
async function run(args: string[]): Promise<{ stdout: string; stderr: string }> {
  vi.stubEnv("HF_TOKEN", TOKEN);
  vi.stubEnv("HF_ENDPOINT", "");
  const out = { stdout: "", stderr: "" };
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: unknown) => ((out.stdout += String(chunk)), true));
  vi.spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => ((out.stderr += String(chunk)), true));
  try {
    await pushCommand(args);
  } finally {
    vi.restoreAllMocks();
  }
  return out;
}

it("thinkcells push OUT_DIR REPO_ID pushes with the token from HF_TOKEN, progress on stderr", async () => {
  const dir = tempDir("hub-cli");
  await mkdir(path.join(dir, "nested"));
  await writeFile(path.join(dir, "config.json"), "{}");
  await writeFile(path.join(dir, "nested/weights.bin"), randomBytes(4096));

  const first = await run([dir, "tester/cli", "--endpoint", hub.url, "--private", "--message", "First push"]);
  expect(first.stdout).toMatch(new RegExp(`^created and pushed to ${hub.url}/tester/cli: 2 files, 4\\.1 kB, commit ${hub.url}/tester/cli/commit/[0-9a-f]{40}\\n$`));
  expect(first.stderr).toMatch(/push tester\/cli {2}2\/2 {2}100% /);
  const repo = hub.repos.get("models/tester/cli")!;
  expect(repo.visibility).toBe("private");
  expect(repo.branches.get("main")!.commits.at(-1)!.title).toBe("First push");
  expect(hub.files("models/tester/cli").get("config.json")!.toString()).toBe("{}");

  const second = await run([dir, "tester/cli", "--endpoint", hub.url, "--revision", "v2"]);
  expect(second.stdout).toMatch(/^pushed to /);
  expect([...hub.files("models/tester/cli", "v2").keys()].sort()).toEqual(["config.json", "nested/weights.bin"]);
  expect(first.stdout + first.stderr + second.stdout + second.stderr).not.toContain(TOKEN);
});

it("answers wrong arguments with errors the CLI shows with its usage", async () => {
  await expect(run(["only-a-dir"])).rejects.toThrow(PushUsageError);
  await expect(run(["only-a-dir"])).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_PARSE_ARGS/), message: "push expects OUT_DIR and REPO_ID, got 1 argument" });
  // No --token: the token comes from the environment only.
  await expect(run(["dir", "tester/x", "--token", TOKEN])).rejects.toMatchObject({ code: "ERR_PARSE_ARGS_UNKNOWN_OPTION" });
});
