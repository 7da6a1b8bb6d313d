/** The row shapes training data comes in, as zod schemas, and telling them apart by their keys. */
import { z } from "zod";
import { REASONING_TYPES } from "../reasoning/classify.ts";

export const ROLES = ["system", "user", "assistant", "tool"] as const;

/** Plain SFT pairs: the model learns to produce `completion` after `prompt`. */
export const PromptCompletionRow = z.object({ prompt: z.string(), completion: z.string() });
export type PromptCompletionRow = z.output<typeof PromptCompletionRow>;

/** Stanford Alpaca's layout; `input` is optional context for the instruction. */
export const AlpacaRow = z.object({ instruction: z.string(), input: z.string().optional(), output: z.string() });
export type AlpacaRow = z.output<typeof AlpacaRow>;

/** A conversation, optionally labelled with the kind of reasoning it exercises. */
export const ChatRow = z.object({
  messages: z.array(z.object({ role: z.enum(ROLES), content: z.string() })).min(1, "expected at least one message"),
  reasoning_type: z.enum(REASONING_TYPES).optional(),
});
export type ChatRow = z.output<typeof ChatRow>;

/** GSM8K's layout: the answer is a worked solution ending in "#### <number>". */
export const Gsm8kRow = z.object({ question: z.string(), answer: z.string() });
export type Gsm8kRow = z.output<typeof Gsm8kRow>;

/** Pairwise preferences (DPO and reward models). */
export const PreferenceRow = z.object({ prompt: z.string(), chosen: z.string(), rejected: z.string() });
export type PreferenceRow = z.output<typeof PreferenceRow>;

/** RL with verifiable rewards: a prompt and the reference answer a completion is checked against. */
export const RlRow = z.object({ prompt: z.string(), answer: z.string() });
export type RlRow = z.output<typeof RlRow>;

export const SHAPES = {
  prompt_completion: PromptCompletionRow,
  alpaca: AlpacaRow,
  chat: ChatRow,
  gsm8k: Gsm8kRow,
  preference: PreferenceRow,
  rl: RlRow,
} as const;

export type ShapeName = keyof typeof SHAPES;
export type RowOf<S extends ShapeName> = z.output<(typeof SHAPES)[S]>;
export const SHAPE_NAMES = Object.keys(SHAPES) as ShapeName[];

/** The shape's keys as users write them, e.g. "{instruction, input?, output}". */
export function describeShape(shape: ShapeName): string {
  const keys = Object.entries(SHAPES[shape].shape).map(([key, schema]) =>
    schema instanceof z.ZodOptional ? `${key}?` : key,
  );
  return `{${keys.join(", ")}}`;
}

/** The shape whose required keys a row has; a shape with more required keys wins (a preference
 * row also has a prompt), then the order of SHAPES. */
export function detectShape(row: unknown): ShapeName | undefined {
  if (typeof row !== "object" || row === null || Array.isArray(row)) return undefined;
  const byKeys = [...SHAPE_NAMES].sort((a, b) => requiredKeys(b).length - requiredKeys(a).length);
  return byKeys.find((shape) => requiredKeys(shape).every((key) => key in row));
}

function requiredKeys(shape: ShapeName): string[] {
  return Object.entries(SHAPES[shape].shape)
    .filter(([, schema]) => !(schema instanceof z.ZodOptional))
    .map(([key]) => key);
}
