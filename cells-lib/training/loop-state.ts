/** What a training loop saves in a checkpoint beside the bridge's state: which trainer saved
 * it, the step history, the evaluations and the trainer's own state, each typed by the
 * trainer's schema, so a resumed run gets back exactly what it saved, or a clear refusal. */
import { z } from "zod";
import type { JsonObject, JsonValue } from "../checkpoints/store.ts";
import { formatIssues, issuesFrom, OptionsError } from "../util/options.ts";

export const TRAINER_KINDS = ["sft", "dpo", "grpo"] as const;
export type TrainerKind = (typeof TRAINER_KINDS)[number];
/** The cell that runs each trainer, for messages. */
const TRAINER_CELLS: Record<TrainerKind, string> = { sft: "trainSft", dpo: "trainDpo", grpo: "grpoTrainer" };

export interface LoopSchemas<S, E, X> {
  step: z.ZodType<S>;
  evaluation: z.ZodType<E>;
  /** The trainer's own state (e.g. the RL data cursor, DPO's reference log-probs). */
  state: z.ZodType<X>;
}

export interface LoopState<S, E, X> {
  history: S[];
  evaluations: E[];
  state: X;
}

/** The loop state as checkpoint metadata, tagged with the trainer. A JSON round trip, as the
 * store makes, so the run goes on with what a resumed run will read. */
export function encodeLoopState<S, E, X>(kind: TrainerKind, loop: LoopState<S, E, X>): JsonObject {
  return JSON.parse(JSON.stringify({ trainer: kind, ...loop }));
}

/** The loop state a checkpoint's metadata holds, refused unless `kind` saved it; `where` names
 * the cell and the checkpoint in messages. */
export function decodeLoopState<S, E, X>(
  kind: TrainerKind,
  schemas: LoopSchemas<S, E, X>,
  saved: JsonValue | undefined,
  where: string,
): LoopState<S, E, X> {
  const tag = z.object({ trainer: z.enum(TRAINER_KINDS) }).safeParse(saved);
  // Untagged: saved before checkpoints named their trainer; its shape alone must then match.
  const savedBy = tag.success ? tag.data.trainer : undefined;
  if (savedBy !== undefined && savedBy !== kind) {
    throw new OptionsError(
      `${where}: the checkpoint was saved by ${TRAINER_CELLS[savedBy]} (${savedBy}), ` +
        `not ${TRAINER_CELLS[kind]} (${kind}): resume it with the trainer that saved it`,
    );
  }
  const schema = z.object({
    history: z.array(schemas.step),
    evaluations: z.array(schemas.evaluation),
    state: schemas.state,
  });
  const parsed = schema.safeParse(saved);
  if (!parsed.success) {
    const problems = formatIssues(issuesFrom(parsed.error, saved), "field");
    const untagged = savedBy === undefined ? " (it does not record which trainer saved it)" : "";
    throw new Error(
      `${where}: the checkpoint's loop state${untagged} is not what ${TRAINER_CELLS[kind]} saves: ${problems}`,
    );
  }
  return parsed.data;
}
