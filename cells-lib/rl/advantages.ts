/** Group-relative advantages (GRPO, Dr. GRPO): each completion is judged against the other
 * completions of its prompt, Â_i = (R_i − mean) / (std + eps), the same for all its tokens. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { allTie, mean, present, sampleStd } from "./stats.ts";

const GroupAdvantageOptions = z
  .object({
    /** "group": std of the prompt's group (GRPO). "batch": the group's mean but the std of
     * every reward in the batch, as TRL's scale_rewards="batch" does, so an easy prompt's
     * tiny spread is not blown up. "none": no division at all (Dr. GRPO). */
    scale: z.enum(["group", "batch", "none"]).default("group"),
    eps: z.number().positive().default(1e-4),
  })
  .strict();
export type GroupAdvantageOptions = z.input<typeof GroupAdvantageOptions>;

export interface GroupAdvantages {
  /** Shaped like the input; a null reward gets 0. */
  advantages: number[][];
  /** Fraction of groups whose rewards all tie (or that have fewer than two rewards): they
   * teach nothing. 0 for an empty batch. */
  zeroStdFraction: number;
}

/** `groups[g][i]` is the reward of completion i of prompt g, or null when no reward function
 * gave it a value; null rewards are left out of the mean and std. Std is unbiased (n − 1),
 * like torch.std in TRL. */
export function groupAdvantages(
  groups: readonly (readonly (number | null)[])[],
  options?: GroupAdvantageOptions,
): GroupAdvantages {
  const o = parseOptions(GroupAdvantageOptions, options, "groupAdvantages");
  groups.forEach((group, g) =>
    group.forEach((r, i) => {
      if (r !== null && !Number.isFinite(r))
        throw new Error(`groupAdvantages: reward ${i} of group ${g} is ${r}; rewards must be finite numbers or null`);
    }),
  );
  const batchStd = sampleStd(groups.flatMap(present));
  let ties = 0;
  const advantages = groups.map((group) => {
    const values = present(group);
    if (allTie(values)) ties++;
    if (values.length === 0) return group.map(() => 0);
    const m = mean(values);
    const divisor = o.scale === "none" ? 1 : (o.scale === "batch" ? batchStd : sampleStd(values)) + o.eps;
    return group.map((r) => (r === null ? 0 : (r - m) / divisor));
  });
  return { advantages, zeroStdFraction: groups.length === 0 ? 0 : ties / groups.length };
}
