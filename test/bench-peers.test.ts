/** `npm run bench:peers` end to end at its smoke settings (2 steps of every row, tiny sizes, both sides), so the
 * harness cannot rot: every row is there, with finite numbers from both thinkcells and TRL. */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import type { Row } from "../bench/peers/report.ts";
import { type Settings, smokeSettings } from "../bench/peers/settings.ts";
import { repoRoot, tempDir } from "./helpers.ts";

function expectedRows(s: Settings): string[] {
  return [
    "sft.tokens_per_s",
    "sft.final_train_loss",
    "sft.held_out_loss",
    "sft.peak_rss_mib",
    ...s.grpo.lossTypes.flatMap((l) =>
      ["seconds_per_step", "cpu_seconds_per_step", "sampled_tokens_per_s", "peak_rss_mib", "held_out_accuracy"].map(
        (m) => `grpo.${l}.${m}`,
      ),
    ),
    "dpo.pairs_per_s",
    "dpo.held_out_reward_accuracy",
    "dpo.peak_rss_mib",
    "grpo_qwen.seconds_per_step",
    "grpo_qwen.cpu_seconds_per_step",
    "grpo_qwen.sampled_tokens_per_s",
    "grpo_qwen.peak_rss_mib",
  ];
}

describe("npm run bench:peers --smoke", () => {
  it("runs both sides on every row and reports finite numbers", { timeout: 600_000 }, async () => {
    const out = path.join(tempDir("peers"), "peers.json");
    const run = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", "bench/peers/run.ts", "--smoke", "--out", out],
      { cwd: repoRoot, maxBuffer: 16 * 2 ** 20 },
    );
    expect(run.stdout).toContain("| grpo.dapo.seconds_per_step |");
    const report = JSON.parse(readFileSync(out, "utf8")) as {
      settings: Settings;
      rows: Row[];
      versions: Record<string, string>;
    };
    expect(report.settings).toEqual(smokeSettings());
    expect(report.versions.trl).toMatch(/^\d+\.\d+/);
    expect(report.rows.map((r) => r.name)).toEqual(expectedRows(report.settings));
    for (const r of report.rows) {
      for (const side of [r.thinkcells, r.trl]) {
        expect(side.values.length, r.name).toBeGreaterThan(0);
        for (const v of [side.mean, side.sd, ...side.values]) expect(Number.isFinite(v), `${r.name}: ${v}`).toBe(true);
      }
      // Rates, times and memory are positive on both sides; a ratio is missing only where TRL's value is 0.
      if (!/accuracy|loss/.test(r.name)) expect(r.thinkcells.mean * r.trl.mean, r.name).toBeGreaterThan(0);
      if (r.ratio === null) expect(r.trl.mean, r.name).toBe(0);
      else expect(Number.isFinite(r.ratio), r.name).toBe(true);
    }
  });
});
