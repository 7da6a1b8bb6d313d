/** Reasoning formats: where a completion's reasoning ends and its answer begins. Parsing is
 * lenient (models under training produce broken markup, and rewards still need its parts);
 * `checkFormat` is the strict judge a format reward uses. */
import { z } from "zod";
import { OptionsError, parseOptions } from "../util/options.ts";
import { findBoxes } from "./latex.ts";

export const REASONING_STYLES = ["think", "thinking", "reasoning_answer", "boxed"] as const;
/** `think`: `<think>R</think>A`; `thinking`: `<thinking>R</thinking>A`;
 * `reasoning_answer`: `<reasoning>R</reasoning><answer>A</answer>`; `boxed`: `R \boxed{A}`. */
export type ReasoningStyle = (typeof REASONING_STYLES)[number];

export interface ReasoningParts {
  reasoning: string;
  answer: string;
}

export interface ParsedReasoning extends ReasoningParts {
  /** null when the text has no markers of any style. */
  style: ReasoningStyle | null;
  wellFormed: boolean;
  problems: string[];
}

export interface FormatCheck {
  ok: boolean;
  problems: string[];
}

interface Tags {
  open: string;
  close: string;
}

const REASONING_TAGS: Record<Exclude<ReasoningStyle, "boxed">, Tags> = {
  think: { open: "<think>", close: "</think>" },
  thinking: { open: "<thinking>", close: "</thinking>" },
  reasoning_answer: { open: "<reasoning>", close: "</reasoning>" },
};
const ANSWER_TAGS: Tags = { open: "<answer>", close: "</answer>" };

/** Each tag names its style; `<think>` is not a prefix of `<thinking>` (the `>` differs). */
const STYLE_OF_MARKER: [string, ReasoningStyle][] = [
  ["<think>", "think"],
  ["</think>", "think"],
  ["<thinking>", "thinking"],
  ["</thinking>", "thinking"],
  ["<reasoning>", "reasoning_answer"],
  ["</reasoning>", "reasoning_answer"],
  ["<answer>", "reasoning_answer"],
  ["</answer>", "reasoning_answer"],
];

/** Splits a completion into reasoning and answer, detecting the style from the first marker
 * in the text (tags win over `\boxed`, which may appear inside a tagged answer). Repairs what
 * it can and lists what it repaired: a missing closing tag makes the rest of the text the
 * reasoning; a missing opening tag (chat templates often put `<think>` in the prompt) makes
 * everything before the closing tag the reasoning; with duplicate tags the reasoning runs from
 * the first opening tag to the last closing tag, and stray tags are removed. */
export function parseReasoning(text: string): ParsedReasoning {
  const style = detectStyle(text);
  if (style === null)
    return { reasoning: "", answer: text.trim(), style, wellFormed: false, problems: ["no reasoning markers"] };
  const { reasoning, answer, problems } = parseAs(text, style);
  return { reasoning, answer, style, wellFormed: problems.length === 0, problems };
}

/** Strict format check for one expected style: exactly one reasoning block, nothing but
 * whitespace before it, non-empty reasoning and answer; `reasoning_answer` also needs a closed
 * answer block with nothing after it, `boxed` exactly one closed box at the end. */
export function checkFormat(text: string, style: ReasoningStyle): FormatCheck {
  const parts = parseAs(text, checkStyle(style, "checkFormat"));
  const problems = [...parts.problems];
  if (!parts.reasoning) problems.push("empty reasoning");
  if (!parts.answer) problems.push("empty answer");
  return { ok: problems.length === 0, problems };
}

const FormatOptions = z
  .object({
    /** Whitespace put inside tags and between blocks, e.g. " " gives `<think> R </think> A`. */
    pad: z.string().regex(/^\s*$/, "must be whitespace").default(""),
  })
  .strict();
export type FormatOptions = z.input<typeof FormatOptions>;

export function formatReasoning(
  parts: ReasoningParts,
  style: ReasoningStyle = "think",
  options?: FormatOptions,
): string {
  const { pad } = parseOptions(FormatOptions, options, "formatReasoning");
  const reasoning = parts.reasoning.trim();
  const answer = parts.answer.trim();
  const s = checkStyle(style, "formatReasoning");
  // A box needs some separation from the reasoning's last word even without padding.
  if (s === "boxed") return [reasoning, `\\boxed{${answer}}`].filter(Boolean).join(pad || " ");
  const { open, close } = REASONING_TAGS[s];
  const tail = s === "reasoning_answer" ? `${ANSWER_TAGS.open}${pad}${answer}${pad}${ANSWER_TAGS.close}` : answer;
  return `${open}${pad}${reasoning}${pad}${close}${pad}${tail}`;
}

/** Re-renders a completion in another style (repairing it as `parseReasoning` does). */
export function convertReasoning(text: string, toStyle: ReasoningStyle, options?: FormatOptions): string {
  const parsed = parseReasoning(text);
  if (parsed.style === null) throw new Error("convertReasoning: the text has no reasoning markers to convert");
  return formatReasoning(parsed, toStyle, options);
}

function checkStyle(style: string, where: string): ReasoningStyle {
  if ((REASONING_STYLES as readonly string[]).includes(style)) return style as ReasoningStyle;
  throw new OptionsError(`${where}: unknown style "${style}"; expected one of ${REASONING_STYLES.join(", ")}`);
}

function detectStyle(text: string): ReasoningStyle | null {
  let first: { at: number; style: ReasoningStyle } | null = null;
  for (const [marker, style] of STYLE_OF_MARKER) {
    const at = text.indexOf(marker);
    if (at >= 0 && (first === null || at < first.at)) first = { at, style };
  }
  if (first) return first.style;
  return findBoxes(text).length > 0 ? "boxed" : null;
}

interface Parts extends ReasoningParts {
  problems: string[];
}

function parseAs(text: string, style: ReasoningStyle): Parts {
  if (style === "boxed") return parseBoxed(text);
  const tags = REASONING_TAGS[style];
  const isAnswerTagged = style === "reasoning_answer";
  // An unclosed <reasoning> still ends where the <answer> block starts.
  const block = splitBlock(text, tags, isAnswerTagged ? ANSWER_TAGS.open : undefined);
  const problems = [...block.problems];
  if (block.before.trim()) problems.push(`text before ${tags.open}`);
  if (!isAnswerTagged) return { reasoning: block.inner, answer: removeTags(block.after, tags), problems };
  const answer = splitBlock(block.after, ANSWER_TAGS);
  problems.push(...answer.problems);
  if (answer.before.trim()) problems.push(`text between ${tags.close} and ${ANSWER_TAGS.open}`);
  if (answer.after.trim()) problems.push(`text after ${ANSWER_TAGS.close}`);
  return { reasoning: block.inner, answer: answer.inner, problems };
}

interface Block {
  before: string;
  inner: string;
  after: string;
  problems: string[];
}

/** The block from the first opening tag to the last closing tag. When the closing tag is
 * missing the block runs to `stop` (if given and present) or to the end. */
function splitBlock(text: string, tags: Tags, stop?: string): Block {
  const problems: string[] = [];
  for (const marker of [tags.open, tags.close]) {
    const n = text.split(marker).length - 1;
    if (n > 1) problems.push(`${n} ${marker} markers`);
  }
  const openAt = text.indexOf(tags.open);
  if (openAt < 0) problems.push(`missing ${tags.open}`);
  const start = openAt < 0 ? 0 : openAt + tags.open.length;
  const before = openAt < 0 ? "" : text.slice(0, openAt);
  const closeAt = text.lastIndexOf(tags.close);
  if (closeAt >= start) {
    return {
      before,
      inner: removeTags(text.slice(start, closeAt), tags),
      after: text.slice(closeAt + tags.close.length),
      problems,
    };
  }
  problems.push(`missing ${tags.close}`);
  const stopAt = stop === undefined ? -1 : text.indexOf(stop, start);
  const end = stopAt < 0 ? text.length : stopAt;
  return { before, inner: removeTags(text.slice(start, end), tags), after: text.slice(end), problems };
}

function removeTags(text: string, tags: Tags): string {
  return text.split(tags.open).join("\n").split(tags.close).join("\n").trim();
}

/** Math delimiters around a box (`$\boxed{5}$.`, `\[\boxed{5}\]`) are not reasoning. */
const BEFORE_BOX = /(?:\$\$?|\\\[|\\\()\s*$/;
const AFTER_BOX = /^(?:\s|\$|\.|\\\]|\\\))*$/;

function parseBoxed(text: string): Parts {
  const boxes = findBoxes(text);
  const last = boxes.at(-1);
  if (!last) return { reasoning: text.trim(), answer: "", problems: ["missing \\boxed{}"] };
  const problems: string[] = [];
  if (boxes.length > 1) problems.push(`${boxes.length} \\boxed{} answers`);
  if (!last.closed) problems.push("unclosed \\boxed{");
  if (!AFTER_BOX.test(text.slice(last.end))) problems.push("text after \\boxed{}");
  return { reasoning: text.slice(0, last.start).replace(BEFORE_BOX, "").trim(), answer: last.content.trim(), problems };
}
