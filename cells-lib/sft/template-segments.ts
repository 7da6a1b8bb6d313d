/** Splits a rendered conversation into the text the loss trains (assistant turns) and the text
 * it does not, by rendering it prefix by prefix: assistant turn i is the text between
 * render(messages[:i], add_generation_prompt) and render(messages[:i+1]). */
import type { ChatMessage, Tokenizer } from "../tokenizer/tokenizer.ts";
import type { ChatTemplate } from "./templates.ts";

export interface Segment {
  text: string;
  trained: boolean;
}

/** The rendered conversation as consecutive segments; their texts join to the whole render.
 * An assistant turn's segment is its content and end marker; whitespace the template puts
 * after the marker is not trained (generation stops at the marker, the template writes it). */
export function conversationSegments(
  tokenizer: Tokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  addGenerationPrompt: boolean,
): Segment[] {
  const render = (count: number, generationPrompt: boolean) =>
    tokenizer.applyChatTemplate(messages.slice(0, count), { template: template.source, addGenerationPrompt: generationPrompt });
  const full = render(messages.length, addGenerationPrompt);
  const segments: Segment[] = [];
  let cursor = 0;
  // Each boundary must be a prefix of the whole: a template that renders earlier turns
  // differently once later ones exist cannot say which tokens belong to which turn.
  const boundary = (count: number, generationPrompt: boolean, from: number): number => {
    const text = render(count, generationPrompt);
    if (!full.startsWith(text) || text.length < from) {
      throw new Error(
        `template "${template.name}" is not prefix-stable at message ${count - (generationPrompt ? 0 : 1)}: rendering the ` +
          `first ${count} message(s)${generationPrompt ? " with the generation prompt" : ""} is not the start of the whole conversation's text, ` +
          `so its assistant tokens cannot be told apart`,
      );
    }
    return text.length;
  };
  messages.forEach((message, i) => {
    if (message.role !== "assistant") return;
    const start = boundary(i, true, cursor);
    const end = start + full.slice(start, boundary(i + 1, false, start)).trimEnd().length;
    segments.push({ text: full.slice(cursor, start), trained: false }, { text: full.slice(start, end), trained: true });
    cursor = end;
  });
  segments.push({ text: full.slice(cursor), trained: false });
  return segments.filter((s) => s.trained || s.text !== "");
}
