/** DAPO's dynamic sampling: groups whose completions all score the same have zero advantage
 * and only dilute the batch, so keep drawing prompts until the batch is full of groups that
 * teach something. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { allTie, present } from "./stats.ts";

/** A group's outcomes: correctness per completion, or rewards (null = no value). */
export type GroupOutcomes = readonly boolean[] | readonly (number | null)[];

/** 0 < #correct < G for correctness; for rewards, the non-null values do not all tie. */
export function isInformative(outcomes: GroupOutcomes): boolean {
  const values = outcomes.map((x) => (typeof x === "boolean" ? Number(x) : x));
  return !allTie(present(values));
}

const DynamicSampleOptions = z
  .object({
    /** Draws `n` more prompts' groups (it may return more or fewer). */
    draw: z.custom<(n: number) => Promise<unknown[]>>(
      (v) => typeof v === "function",
      "draw must be a function (n) => Promise<groups>",
    ),
    /** What isInformative judges for each group. */
    outcomes: z.custom<(group: unknown) => GroupOutcomes>(
      (v) => typeof v === "function",
      "outcomes must be a function (group) => booleans or rewards",
    ),
    batchGroups: z.number().int().positive(),
    /** Cap on calls to draw, like verl's max_num_gen_batches. */
    maxDraws: z.number().int().positive(),
  })
  .strict();

export interface DynamicSampleOptions<G> {
  draw: (n: number) => Promise<G[]>;
  outcomes: (group: G) => GroupOutcomes;
  batchGroups: number;
  maxDraws: number;
}

export interface DynamicSampleResult<G> {
  /** The informative groups kept, at most batchGroups (fewer only when capped). */
  groups: G[];
  /** Groups returned by draw, in total. */
  drawn: number;
  /** Groups dropped as uninformative. */
  filtered: number;
  /** Calls made to draw. */
  draws: number;
  /** True when maxDraws ran out before the batch was full. */
  capped: boolean;
}

/** Each call asks for just the groups still missing; surplus informative groups from an
 * oversampling `draw` are dropped once the batch is full. */
export async function dynamicSample<G>(options: DynamicSampleOptions<G>): Promise<DynamicSampleResult<G>> {
  parseOptions(DynamicSampleOptions, options, "dynamicSample");
  const { draw, outcomes, batchGroups, maxDraws } = options;
  const groups: G[] = [];
  let drawn = 0;
  let filtered = 0;
  let draws = 0;
  while (groups.length < batchGroups && draws < maxDraws) {
    const batch = await draw(batchGroups - groups.length);
    draws++;
    drawn += batch.length;
    for (const group of batch) {
      if (!isInformative(outcomes(group))) filtered++;
      else if (groups.length < batchGroups) groups.push(group);
    }
  }
  return { groups, drawn, filtered, draws, capped: groups.length < batchGroups };
}
