/** Process: is the arithmetic along the way right, whatever the final answer? */

import { parseReasoning } from "../reasoning/index.ts";
import type { RewardFn } from "../rl/rewards.ts";
import { findEquations } from "./equations.ts";

/** The fraction of the reasoning's equations that hold (see `findEquations` for what counts as
 * one); null when the reasoning states none. Without reasoning markers the whole completion
 * is read. */
export function processReward(): RewardFn {
  return (ctx) => {
    const parsed = parseReasoning(ctx.completion);
    const equations = findEquations(parsed.style === null ? ctx.completion : parsed.reasoning);
    if (equations.length === 0) return null;
    return equations.filter((e) => e.holds).length / equations.length;
  };
}
