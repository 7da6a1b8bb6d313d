/** Each token's text as it reads in its context, for showing text token by token. */
import type { Tokenizer } from "./tokenizer.ts";

/** How many context tokens prime the decoder: enough for SentencePiece's leading space and a
 * multi-byte character split over byte tokens. */
const CONTEXT = 4;

/** The text each of `ids` adds after `context` (e.g. the prompt): decoding the pieces one by one
 * would drop SentencePiece's word-start spaces. A token that completes no character yet (the first
 * byte of a multi-byte one) gives "", and the token that completes it carries the character.
 * Special tokens (EOS, BOS) show as their token string. */
export function tokenPieces(tokenizer: Tokenizer, ids: readonly number[], context: readonly number[] = []): string[] {
  const decoder = tokenizer.streamDecoder({ skipSpecialTokens: true });
  // The context's own text is not wanted: only what each id adds after it.
  for (const id of context.slice(-CONTEXT)) decoder.push(id);
  return ids.map((id) => (tokenizer.isSpecial(id) ? (tokenizer.idToToken(id) ?? "") : decoder.push(id)));
}
