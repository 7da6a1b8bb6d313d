/** Splits a rendered conversation into the text the loss trains (assistant turns) and the text
 * it does not. Assistant turn i starts where render(messages[:i], add_generation_prompt) ends,
 * and ends after its content and the end-of-turn marker the template writes right after it. */
import type { ChatMessage, Tokenizer } from "../tokenizer/tokenizer.ts";
import type { ChatTemplate } from "./templates.ts";

export interface Segment {
  text: string;
  trained: boolean;
}

/** Appended to one assistant message to find where the template writes its content: a
 * private-use character, which no template trims or matches. */
const SENTINEL = "\uE000";

/** The rendered conversation as consecutive segments; their texts join to the whole render.
 * An assistant turn's segment is its content and end marker; whitespace the template puts
 * after the marker is not trained (generation stops at the marker, the template writes it). */
export function conversationSegments(
  tokenizer: Tokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  addGenerationPrompt: boolean,
): Segment[] {
  const render = (list: readonly ChatMessage[], generationPrompt: boolean) =>
    tokenizer.applyChatTemplate(list, { template: template.source, addGenerationPrompt: generationPrompt });
  const full = render(messages, addGenerationPrompt);
  const segments: Segment[] = [];
  let cursor = 0;
  // The prompt before an assistant turn must be a prefix of the whole: a template that renders
  // it differently once later turns exist cannot say where the assistant's turn starts.
  const turnStart = (i: number, from: number): number => {
    const text = render(messages.slice(0, i), true);
    if (!full.startsWith(text) || text.length < from) {
      throw new Error(
        `template "${template.name}" is not prefix-stable at message ${i}: rendering the ` +
          `first ${i} message(s) with the generation prompt is not the start of the whole conversation's text, ` +
          `so its assistant tokens cannot be told apart`,
      );
    }
    return text.length;
  };
  // The end is found in the whole text, not by rendering messages[:i+1]: real templates render
  // a turn differently when it is the last one (Qwen3 keeps the <think> block only in turns
  // after the last user turn; Llama 3's first template writes the assistant header after every
  // rendering, which would then be trained). Rendering the whole conversation again with a
  // sentinel after message i's content shows where that content ends; the turn goes on through
  // an end-of-turn marker written right after it, whitespace apart (Llama 2 writes " </s>"): a
  // special token, or a marker the template declares.
  const turnEnd = (i: number, start: number): number => {
    const marked = render(
      messages.map((m, j) => (j === i ? { ...m, content: m.content + SENTINEL } : m)),
      addGenerationPrompt,
    );
    let suffix = 0;
    while (suffix < full.length && full[full.length - 1 - suffix] === marked[marked.length - 1 - suffix]) suffix++;
    const contentEnd = full.length - suffix;
    const once = marked.indexOf(SENTINEL) !== -1 && marked.indexOf(SENTINEL) === marked.lastIndexOf(SENTINEL);
    if (!once || contentEnd < start || !marked.startsWith(full.slice(0, start))) {
      throw new Error(
        `template "${template.name}" does not write message ${i}'s content once, after its generation prompt, so its assistant tokens cannot be told apart`,
      );
    }
    const rest = full.slice(contentEnd);
    const after = contentEnd + rest.length - rest.trimStart().length;
    const [first] = tokenizer.encode(full.slice(after, after + 64));
    const marker =
      template.specialTokens.find((t) => full.startsWith(t, after)) ??
      (first !== undefined && tokenizer.isSpecial(first) ? tokenizer.idToToken(first) : undefined);
    const end = marker !== undefined && full.startsWith(marker, after) ? after + marker.length : contentEnd;
    return start + full.slice(start, end).trimEnd().length;
  };
  messages.forEach((message, i) => {
    if (message.role !== "assistant") return;
    const start = turnStart(i, cursor);
    const end = turnEnd(i, start);
    segments.push({ text: full.slice(cursor, start), trained: false }, { text: full.slice(start, end), trained: true });
    cursor = end;
  });
  segments.push({ text: full.slice(cursor), trained: false });
  return segments.filter((s) => s.trained || s.text !== "");
}
