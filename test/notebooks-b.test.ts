import path from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "./helpers.ts";
import { runWalkthrough } from "./notebooks.ts";

describe("walkthrough notebooks (headless, small parameters)", () => {
  it("04-reward-tweaking", async () => {
    await runWalkthrough("04-reward-tweaking", { sftSteps: 4, stepsPerPhase: 1 });
  }, 600_000);
  it("05-dpo", async () => {
    await runWalkthrough("05-dpo", { pairs: 60, dpoSteps: 3 });
  }, 600_000);
  it("06-export-and-onnx", async () => {
    const outputs = await runWalkthrough("06-export-and-onnx", {
      loraSteps: 3,
      exportDir: path.join(tempDir("nb-export"), "export"),
    });
    expect(
      outputs.some((o) =>
        String((o.data as Record<string, unknown> | undefined)?.["text/plain"] ?? "").includes("identical: true"),
      ),
    ).toBe(true);
  }, 600_000);
  it("07-long-context", async () => {
    await runWalkthrough("07-long-context", { targetLength: 600 });
  }, 600_000);
});
