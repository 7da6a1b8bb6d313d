/** Scoring the gold solutions of the shared benchmarks gives 100% accuracy: the evaluation's
 * answer reading agrees with each dataset's own answer convention. */
import { describe, expect, it } from "vitest";
import { loadGsm8k, loadMath500 } from "../cells-lib/data/benchmarks.ts";
import { scoreCompletion } from "../cells-lib/eval/score.ts";
import { formatReasoning, gsm8kToCot } from "../cells-lib/reasoning/index.ts";
import { sharedPath } from "./helpers.ts";

const gsm8kTest = sharedPath("data/gsm8k/test.jsonl", "scoring the GSM8K gold solutions");
const math500Test = sharedPath("data/math500/test.jsonl", "scoring the MATH-500 gold solutions");

describe("evaluation on the gold solutions", () => {
  it.skipIf(!gsm8kTest)("scores every GSM8K test solution correct, as written and in the <think> format", async () => {
    const { rows } = await loadGsm8k(gsm8kTest!);
    expect(rows).toHaveLength(1319);
    for (const { row } of rows) {
      expect(scoreCompletion(row.answer, row.reference, "think").partial).toBe(true);
      const think = scoreCompletion(formatReasoning(gsm8kToCot(row.answer), "think"), row.reference, "think");
      expect(think.correct && think.formatOk, row.question).toBe(true);
    }
  });

  it.skipIf(!math500Test)("scores every MATH-500 solution correct (its \\boxed{} answer)", async () => {
    const { rows } = await loadMath500(math500Test!);
    expect(rows).toHaveLength(500);
    const wrong = rows.filter(({ row }) => !scoreCompletion(row.solution, row.reference, "boxed").correct);
    expect(wrong.map(({ row }) => row.unique_id)).toEqual([]);
  });
});
