import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "./helpers.ts";
import { runWalkthrough } from "./notebooks.ts";

describe("walkthrough notebooks (headless, small parameters)", () => {
  it("01-quickstart", async () => {
    const outputs = await runWalkthrough("01-quickstart", { maxNewTokens: 16 });
    expect(
      outputs.some((o) => o.output_type === "display_data" && "application/vnd.plotly.v1+json" in (o.data as object)),
    ).toBe(true);
  }, 600_000);
  it("02-sft-cold-start", async () => {
    await runWalkthrough("02-sft-cold-start", { rows: 300, sftSteps: 8, evalRows: 8 });
  }, 600_000);
  it("03-grpo-arithmetic (the demo)", async () => {
    const out = tempDir("nb-demo");
    const outputs = await runWalkthrough("03-grpo-arithmetic", {
      outDir: out,
      rows: 300,
      sftSteps: 8,
      grpoSteps: 2,
      heldOutRows: 8,
      promptsPerStep: 2,
      groupSize: 2,
    });
    const results = outputs.at(-1) as { data: Record<string, string> };
    expect(results.data["text/plain"]).toContain("rl_accuracy");
    expect(existsSync(path.join(out, "model/config.json"))).toBe(true);
    const written = JSON.parse(readFileSync(path.join(out, "results.json"), "utf8"));
    expect(Object.keys(written)).toEqual([
      "base_accuracy",
      "sft_accuracy",
      "sft_format_accuracy",
      "rl_accuracy",
      "rl_format_accuracy",
      "held_out",
      "wall_s",
    ]);
  }, 600_000);
});
