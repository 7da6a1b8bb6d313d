/** `thinkcells`'s help and usage errors (in process, from the command definitions), and through
 * bin/thinkcells.mjs: --help never starts a bridge, `bridge stop` says what it stopped, `push`
 * takes its options from the command line and its token from the environment. */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { type CommandUnknownOpts, Help } from "@commander-js/extra-typings";
import { afterAll, describe, expect, it } from "vitest";
import { cliProgram, UsageError } from "../cli/program.ts";
import { repoRoot, tempDir, testBridge } from "./helpers.ts";
import { startMockHub } from "./mock-hub.ts";

function thinkcells(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(repoRoot, "bin/thinkcells.mjs"), ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Every command that runs something (the leaves), with its path: ["kernel", "install"]. */
function leaves(cmd: CommandUnknownOpts, at: string[] = []): { path: string[]; cmd: CommandUnknownOpts }[] {
  if (cmd.commands.length === 0) return [{ path: at, cmd }];
  return cmd.commands.flatMap((sub) => leaves(sub, [...at, sub.name()]));
}

function helpText(cmd: CommandUnknownOpts): string {
  let out = "";
  cmd.configureOutput({ writeOut: (s) => (out += s) });
  cmd.outputHelp();
  return out;
}

/** What parsing `args` threw (the program's parse errors are UsageErrors). */
async function usageError(args: string[]): Promise<string> {
  const error = await cliProgram()
    .parseAsync(args, { from: "user" })
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  expect(error).toBeInstanceOf(UsageError);
  return (error as UsageError).message;
}

describe("thinkcells help", () => {
  const program = cliProgram();
  const commands = leaves(program);

  it("knows every command", () => {
    expect(commands.map((c) => c.path.join(" "))).toEqual([
      "convert llama2c",
      "sample",
      "export",
      "push",
      "eval",
      "check",
      "run",
      "kernel install",
      "kernel uninstall",
      "status",
      "bridge stop",
      "help",
    ]);
  });

  it.each(commands.map((c) => ({ ...c, name: c.path.join(" ") })))(
    "$name: says what it does, each option's default and an example",
    ({ path: names, cmd }) => {
      const text = helpText(cmd);
      expect(text).toMatch(new RegExp(`^Usage: thinkcells ${names.join(" ")} `));
      expect(cmd.description().length).toBeGreaterThan(20);
      expect(text).toMatch(new RegExp(`\\nExample:\\n {2}(\\S+=\\S+ )?thinkcells ${names.join(" ")}\\b`));
      const help = new Help();
      Object.assign(help, program.configureHelp());
      for (const option of cmd.options) {
        if (option.long === "--help") continue;
        expect(help.optionDescription(option), option.flags).toMatch(
          option.mandatory ? /\(required\)/ : /\(.*default: [^)]+\)$/,
        );
      }
    },
  );

  it("lists every command and the exit statuses in the program's help", () => {
    const text = helpText(program);
    for (const name of [
      "convert",
      "sample",
      "export",
      "push",
      "eval",
      "check",
      "run",
      "kernel",
      "status",
      "bridge",
      "help",
    ]) {
      expect(text).toMatch(new RegExp(`\\n {2}${name} `));
    }
    expect(text).toContain("Exit status: 0 done, 1 the command failed, 2 the command line was not understood.");
  });

  it("names what it did not understand, with the usage and where to read more", async () => {
    expect(await usageError(["frobnicate"])).toBe(
      'thinkcells: unknown command "frobnicate"\nusage: thinkcells [options] [command]\nRun "thinkcells help" for the commands.',
    );
    expect(await usageError(["sampel", "dir"])).toMatch(
      /^thinkcells: unknown command "sampel"\n\(Did you mean sample\?\)/,
    );
    expect(await usageError(["sample", "dir", "--tempreature", "0"])).toBe(
      "thinkcells sample: unknown option '--tempreature'\n(Did you mean --temperature?)\nusage: thinkcells sample [options] <MODEL_DIR>\n" +
        'Run "thinkcells help sample" for its options, their defaults and an example.',
    );
    expect(await usageError(["sample", "dir", "--temperature", "hot"])).toMatch(
      /^thinkcells sample: option '--temperature <T>' argument 'hot' is invalid\. Expected a number\.\n/,
    );
    expect(await usageError(["sample", "dir", "--n", "1.5"])).toMatch(
      /argument '1\.5' is invalid\. Expected an integer\./,
    );
    expect(await usageError(["sample", "dir", "--seed"])).toMatch(
      /^thinkcells sample: option '--seed <S>' argument missing\n/,
    );
    expect(await usageError(["convert", "llama2c", "m.bin"])).toMatch(
      /^thinkcells convert llama2c: missing TOKENIZER\.bin and OUT_DIR \(convert llama2c expects MODEL\.bin TOKENIZER\.bin OUT_DIR\)\n/,
    );
    expect(await usageError(["export", "a", "b", "c"])).toMatch(
      /^thinkcells export: unexpected argument "c" \(export expects CHECKPOINT OUT_DIR\)\n/,
    );
    expect(await usageError(["export", "a", "b", "--dtype", "fp8"])).toMatch(
      /'fp8' is invalid\. Allowed choices are auto, float32, bfloat16, float16\./,
    );
    expect(await usageError(["export", "a", "b", "--shard-bytes", "0"])).toMatch(
      /'0' is invalid\. Expected a positive integer\./,
    );
    expect(await usageError(["eval", "dir"])).toMatch(
      /^thinkcells eval: required option '--data <FILE>' not specified\n/,
    );
    expect(await usageError(["status", "now"])).toMatch(
      /^thinkcells status: unexpected argument "now" \(status takes no arguments\)\n/,
    );
    expect(await usageError(["kernel", "instal"])).toMatch(
      /^thinkcells kernel: unknown command "instal"\n\(Did you mean install\?\)\nusage: thinkcells kernel /,
    );
    // The token comes from the environment only.
    expect(await usageError(["push", "dir", "me/repo", "--token", "hf_x"])).toMatch(
      /^thinkcells push: unknown option '--token'\n/,
    );
    expect(await usageError(["help", "kernel", "frob"])).toBe(
      'thinkcells help: unknown command "kernel frob"\nRun "thinkcells help" for the commands.',
    );
  });
});

describe("bin/thinkcells.mjs", () => {
  const bridge = testBridge("cli-help");
  afterAll(() => bridge.stop());

  it("prints a command's help for --help and `help COMMAND` (exit 0), without starting a bridge", async () => {
    const dir = tempDir("cli-help-no-bridge");
    const env = { THINKCELLS_BRIDGE_DIR: dir, THINKCELLS_SESSION: "never" };
    const [flag, command, status, nested] = await Promise.all([
      thinkcells(["sample", "--help"], env),
      thinkcells(["help", "sample"], env),
      thinkcells(["status", "--help"], env),
      thinkcells(["help", "kernel", "install"], env),
    ]);
    expect(flag.code, flag.stderr).toBe(0);
    expect(flag.stdout).toMatch(
      /^Usage: thinkcells sample \[options\] <MODEL_DIR>\n[\s\S]*--max-new-tokens <N> +the most tokens per completion \(default: 256\)/,
    );
    expect(command).toEqual(flag);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^Usage: thinkcells status /);
    expect(nested.stdout).toMatch(/^Usage: thinkcells kernel install \[options\]/);
    expect(readdirSync(dir)).toEqual([]);
  }, 60_000);

  it("exits 2 on a command line it does not understand", async () => {
    const bad = await thinkcells(["sample", "some/model", "--frob"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^thinkcells sample: unknown option '--frob'\nusage: thinkcells sample /);
    expect(bad.stdout).toBe("");
  }, 30_000);

  it("`bridge stop` says which bridge it stopped, or that none was running, and never starts one", async () => {
    const env = { THINKCELLS_BRIDGE_DIR: bridge.dir, THINKCELLS_SESSION: bridge.session };
    const client = await bridge.connect();
    const pid = client.hello.pid;
    client.close();
    const stopped = await thinkcells(["bridge", "stop"], env);
    expect(stopped).toMatchObject({ code: 0, stdout: `stopped the bridge of session "cli-help" (pid ${pid})\n` });
    expect(existsSync(path.join(bridge.dir, "cli-help.json"))).toBe(false);
    const none = await thinkcells(["bridge", "stop"], env);
    expect(none).toMatchObject({ code: 0, stdout: "no bridge was running: nothing stopped\n" });
    expect(existsSync(path.join(bridge.dir, "cli-help.json"))).toBe(false);
  }, 60_000);

  it("`push` uploads with the token from HF_TOKEN and prints where to", async () => {
    const token = `hf_MARKER${randomBytes(12).toString("hex")}`;
    const hub = await startMockHub(token);
    try {
      const dir = tempDir("cli-push");
      writeFileSync(path.join(dir, "config.json"), "{}");
      const pushed = await thinkcells(
        ["push", dir, "tester/cli", "--endpoint", hub.url, "--private", "--message", "From the CLI"],
        { HF_TOKEN: token, HF_ENDPOINT: "" },
      );
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(pushed.stdout).toMatch(
        new RegExp(
          `^created and pushed to ${hub.url}/tester/cli: 1 file, 2 B, commit ${hub.url}/tester/cli/commit/[0-9a-f]{40}\\n$`,
        ),
      );
      const repo = hub.repos.get("models/tester/cli")!;
      expect(repo.visibility).toBe("private");
      expect(repo.branches.get("main")!.commits.at(-1)!.title).toBe("From the CLI");
      expect(pushed.stdout + pushed.stderr).not.toContain(token);
    } finally {
      await hub.stop();
    }
  }, 30_000);
});
