/** The reward TRL calls in `npm run bench:peers` (bench/peers/correctness_reward.py) is a Python port of
 * thinkcells' correctness reward: both score the same 200 completions, and read the same final answers. */
import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { findPython } from "../cells-lib/bridge/client.ts";
import { formatExample, generateArithmetic } from "../cells-lib/reasoning/index.ts";
import { correctnessReward, finalAnswer } from "../cells-lib/rewards/index.ts";
import { mulberry32, type Random } from "../cells-lib/util/random.ts";
import { repoRoot } from "./helpers.ts";

interface Case {
  completion: string;
  reference?: string;
}

const pick = <T>(random: Random, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

/** Completions a model under training writes, and the ways they go wrong: each kind takes a worked problem
 * (reasoning, answer) and a source of randomness. */
const KINDS: ((p: { reasoning: string; answer: string }, random: Random) => Case)[] = [
  // Right, in the trained format.
  (p) => ({ completion: formatExample({ prompt: "", ...p }).completion, reference: p.answer }),
  // Wrong by a little.
  (p, r) => ({
    completion: ` <think> ${p.reasoning} </think> ${Number(p.answer) + pick(r, [-10, -1, 1, 2])}`,
    reference: p.answer,
  }),
  // Broken markup: missing closing tag, missing opening tag, none, the answer inside the reasoning, tags twice.
  (p) => ({ completion: ` <think> ${p.reasoning} ${p.answer}`, reference: p.answer }),
  (p) => ({ completion: ` ${p.reasoning} </think> ${p.answer}`, reference: p.answer }),
  (p) => ({ completion: ` ${p.reasoning} ${p.answer}`, reference: p.answer }),
  (p) => ({ completion: ` <think> ${p.reasoning} ${p.answer} </think>`, reference: p.answer }),
  (p) => ({ completion: ` <think> a </think> <think> ${p.reasoning} </think> ${p.answer}`, reference: p.answer }),
  (p) => ({ completion: `<thinking>${p.reasoning}</thinking>${p.answer}`, reference: p.answer }),
  // Text around the answer.
  (p, r) => ({
    completion: ` <think> ${p.reasoning} </think> ${pick(r, [`${p.answer}.`, `The answer is ${p.answer}!`, `${p.answer} and 5 more`, `$${p.answer}$`])}`,
    reference: p.answer,
  }),
  (p, r) => ({
    completion: ` <think> ${p.reasoning} </think> ${p.answer}${pick(r, [" apples", "\n", " = ?", "%"])}`,
    reference: p.answer,
  }),
  // Signs: a negative reference written several ways.
  (p, r) => ({
    completion: ` <think> ${p.reasoning} </think> ${pick(r, [`-${p.answer}`, `−${p.answer}`, `- ${p.answer}`, `(-${p.answer})`])}`,
    reference: `-${p.answer}`,
  }),
  (p) => ({ completion: ` <think> 3-${p.answer} </think> 3-${p.answer}`, reference: `-${p.answer}` }),
  // Decimals, fractions, separators.
  (p, r) => ({
    completion: ` <think> ${p.reasoning} </think> ${pick(r, [`${p.answer}.0`, `${p.answer}.50`, `${p.answer}/2`, `\\frac{${p.answer}}{2}`, `.5`])}`,
    reference: pick(r, [p.answer, `${Number(p.answer) / 2}`, "0.5", `${p.answer}.5`]),
  }),
  (p, r) => ({
    completion: ` <think> x </think> ${pick(r, ["1,234", "1 234", "1,234.0", "12,34", "1234."])}`,
    reference: pick(r, ["1234", "1,234", p.answer]),
  }),
  // Other answer styles: boxes, answer tags, GSM8K's ####.
  (p, r) => ({
    completion: pick(r, [
      `${p.reasoning} \\boxed{${p.answer}}`,
      `so $\\boxed{${p.answer}}$.`,
      `\\boxed{${p.answer}`,
      `\\boxed{\\frac{1}{2}} then \\boxed{${p.answer}}`,
      `\\fbox{${p.answer}} trailing`,
    ]),
    reference: p.answer,
  }),
  (p, r) => ({
    completion: pick(r, [
      `<reasoning>${p.reasoning}</reasoning><answer>${p.answer}</answer>`,
      `<reasoning>${p.reasoning}<answer>${p.answer}`,
      `<answer>${p.answer}</answer> extra`,
      `<reasoning>${p.reasoning}</reasoning> text <answer> ${p.answer} </answer>`,
    ]),
    reference: p.answer,
  }),
  (p, r) => ({ completion: `${p.reasoning}\n#### ${pick(r, [p.answer, `${p.answer}0`, ""])}`, reference: p.answer }),
  // Nothing usable, or nothing to check against.
  (_p, r) => ({
    completion: pick(r, ["", "   \n", " <think> </think> ", "Once upon a time there were 3 cats."]),
    reference: "3",
  }),
  (p, r) => ({ completion: formatExample({ prompt: "", ...p }).completion, reference: pick(r, ["", "  ", undefined]) }),
  // Sampled noise from the characters the model writes.
  (p, r) => ({
    completion: Array.from({ length: 4 + Math.floor(r() * 40) }, () =>
      pick(r, [..." 0123456789+-=,.<>/thinkab\\{}"]),
    ).join(""),
    reference: p.answer,
  }),
];

function cases(n: number): Case[] {
  const random = mulberry32(19);
  const problems = generateArithmetic({
    count: n,
    seed: 19,
    difficulty: [1, 2, 3, 4],
    operations: { add: 1, sub: 1, mul: 1 },
  });
  return problems.map((p, i) => KINDS[i % KINDS.length]!(p, random));
}

describe("bench/peers/correctness_reward.py", () => {
  it("scores 200 completions as thinkcells' correctnessReward does, reading the same final answers", () => {
    const all = cases(200);
    const reward = correctnessReward();
    const expected = all.map((c) => ({
      score: reward({
        prompt: "",
        completion: c.completion,
        completionIds: [],
        reference: c.reference,
        row: {},
        step: 0,
      }),
      answer: finalAnswer(c.completion),
    }));
    const python = JSON.parse(
      execFileSync(findPython(), [path.join(repoRoot, "bench/peers/correctness_reward.py")], {
        input: JSON.stringify(all),
        encoding: "utf8",
      }),
    ) as typeof expected;
    expect(python).toHaveLength(200);
    python.forEach((p, i) => expect({ case: all[i], ...p }).toEqual({ case: all[i], ...expected[i] }));
    // The set is varied: right, wrong and unscored completions all occur.
    const count = (score: number | null) => expected.filter((e) => e.score === score).length;
    expect(count(1)).toBeGreaterThan(40);
    expect(count(0)).toBeGreaterThan(40);
    expect(count(null)).toBeGreaterThan(5);
  });
});
