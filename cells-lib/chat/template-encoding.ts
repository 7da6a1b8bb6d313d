/** Token ids for a rendered conversation's segments, each encoded as the continuation of the
 * text before it, so every token is known to belong to a trained segment or not. */
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { Segment } from "./template-segments.ts";

export interface EncodedSegments {
  tokens: number[];
  /** 1 on tokens of trained segments (and the EOS after them), 0 elsewhere. */
  weights: number[];
}

/** Segment ids are the whole text's ids after the previous text's ids whenever the tokenizer
 * does not merge across the boundary (then the segments join to exactly the whole text's
 * tokenization). `eos`, when given, follows each trained segment that does not already end
 * with it. */
export function encodeSegments(
  tokenizer: Tokenizer,
  segments: readonly Segment[],
  eos: number | undefined,
): EncodedSegments {
  const tokens: number[] = [];
  const weights: number[] = [];
  let text = "";
  let textIds: number[] = [];
  for (const segment of segments) {
    const nextText = text + segment.text;
    const nextIds = tokenizer.encode(nextText);
    const ids = startsWith(nextIds, textIds)
      ? nextIds.slice(textIds.length)
      : encodeAfter(tokenizer, tokens, segment.text);
    if (segment.trained && eos !== undefined && ids.at(-1) !== eos) ids.push(eos);
    tokens.push(...ids);
    weights.push(...ids.map(() => (segment.trained ? 1 : 0)));
    text = nextText;
    textIds = nextIds;
  }
  return { tokens, weights };
}

/** When a merge crosses the boundary (a prompt ending in a space, "Answer: " + "42"), the
 * tokens before keep their own ids, as the model sees them at inference when the prompt is
 * encoded alone, and `text` is encoded on its own: as is (byte-level BPE), or after a newline
 * that is then dropped, for tokenizers that mark the start of every text they encode as a word
 * start (SentencePiece's "▁", which would add a space). The first encoding whose ids decode to
 * exactly `text` after the tokens before wins. */
function encodeAfter(tokenizer: Tokenizer, before: readonly number[], text: string): number[] {
  const context = tokenizer.decode(before);
  const anchor = tokenizer.encode("\n");
  const anchored = tokenizer.encode(`\n${text}`);
  const candidates = [tokenizer.encode(text), ...(startsWith(anchored, anchor) ? [anchored.slice(anchor.length)] : [])];
  const ids = candidates.find((c) => tokenizer.decode([...before, ...c]) === context + text);
  if (ids === undefined) {
    throw new Error(
      `cannot tokenize ${JSON.stringify(truncate(text))} as the continuation of ${JSON.stringify(truncate(context, true))}: ` +
        `the tokenizer merges across the boundary and the text does not encode on its own to ids that decode back to it`,
    );
  }
  return ids;
}

function startsWith(ids: readonly number[], prefix: readonly number[]): boolean {
  return prefix.length <= ids.length && prefix.every((id, i) => ids[i] === id);
}

function truncate(text: string, keepEnd = false): string {
  if (text.length <= 40) return text;
  return keepEnd ? `…${text.slice(-40)}` : `${text.slice(0, 40)}…`;
}
