import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { conversationSegments } from "../cells-lib/chat/template-segments.ts";
import {
  BUILTIN_TEMPLATES,
  type ChatTemplate,
  resolveTemplate,
  TEMPLATE_NAMES,
  templatesFor,
} from "../cells-lib/chat/templates.ts";
import { llama2cTokenizer, llama2cTokenizerConfig, llama2cTokenizerJson } from "../cells-lib/tokenizer/llama2c.ts";
import {
  type ChatMessage,
  loadTokenizer,
  type Tokenizer,
  tokenizerFromJson,
} from "../cells-lib/tokenizer/tokenizer.ts";
import { OptionsError } from "../cells-lib/util/options.ts";
import { sharedPath, stories } from "./helpers.ts";

const bin = new Uint8Array(readFileSync(path.join(stories, "tok512.bin")));
const tiny = llama2cTokenizer(bin);
const qwenDir = sharedPath("fixtures/qwen2_tokenizer", "the tests on the real Qwen2 tokenizer");
let qwen: Tokenizer;
beforeAll(async () => {
  if (qwenDir) qwen = await loadTokenizer(qwenDir);
});

const conversation: ChatMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Hello!" },
  { role: "user", content: "2+2?" },
  { role: "assistant", content: "4" },
];

const render = (name: keyof typeof BUILTIN_TEMPLATES, messages: ChatMessage[], addGenerationPrompt = false) =>
  tiny.applyChatTemplate(messages, { template: BUILTIN_TEMPLATES[name].source, addGenerationPrompt });

describe("built-in templates", () => {
  test("chatml", () => {
    expect(render("chatml", conversation)).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    );
    expect(render("chatml", conversation.slice(0, 2), true)).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  test.skipIf(!qwenDir)("chatml is what the Qwen2 tokenizer's own template renders, minus its test suffix", () => {
    const own = qwen.applyChatTemplate(conversation, { addGenerationPrompt: true });
    expect(own).toBe(`${render("chatml", conversation, true)}template ends here`);
  });

  test("llama3 trims content and leaves BOS to the tokenizer", () => {
    expect(
      render("llama3", [
        { role: "user", content: " Hi\n" },
        { role: "assistant", content: "Hello!" },
      ]),
    ).toBe(
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
    );
    expect(render("llama3", [{ role: "user", content: "Hi" }], true)).toBe(
      "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });

  test("gemma folds the system message into the first user turn and calls the assistant model", () => {
    expect(render("gemma", conversation)).toBe(
      "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n" +
        "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n",
    );
    expect(render("gemma", conversation.slice(0, 2), true)).toBe(
      "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n",
    );
    expect(render("gemma", [{ role: "user", content: "Hi" }])).toBe("<start_of_turn>user\nHi<end_of_turn>\n");
  });

  test("gemma gives a system message before a model turn a user turn of its own (never trained)", () => {
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "assistant", content: "Hello!" },
    ];
    expect(render("gemma", messages)).toBe(
      "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
    );
    const trained = conversationSegments(tiny, BUILTIN_TEMPLATES.gemma, messages, false).filter((s) => s.trained);
    expect(trained.map((s) => s.text)).toEqual(["Hello!<end_of_turn>"]);
  });

  test("thinking: plain text, the generation prompt ends without a space", () => {
    const messages = [
      { role: "user", content: "23+45?" },
      { role: "assistant", content: "<thinking> 3+5=8, 2+4=6 </thinking> 68" },
    ];
    expect(render("thinking", messages)).toBe("User: 23+45?\nAssistant: <thinking> 3+5=8, 2+4=6 </thinking> 68\n");
    expect(render("thinking", messages.slice(0, 1), true)).toBe("User: 23+45?\nAssistant:");
    expect(render("thinking", conversation)).toBe(
      "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: 2+2?\nAssistant: 4\n",
    );
  });

  test("plain: contents back to back", () => {
    expect(
      render("plain", [
        { role: "user", content: "23+45?" },
        { role: "assistant", content: "<think> 8 </think> 68" },
      ]),
    ).toBe("23+45?<think> 8 </think> 68");
    expect(render("plain", [{ role: "user", content: "23+45?" }], true)).toBe("23+45?");
  });

  test("the end-of-turn markers are what assistant turns train on", () => {
    const ends = Object.fromEntries(
      (Object.keys(BUILTIN_TEMPLATES) as (keyof typeof BUILTIN_TEMPLATES)[]).map((name) => [
        name,
        conversationSegments(tiny, BUILTIN_TEMPLATES[name], conversation, false)
          .filter((s) => s.trained)
          .map((s) => s.text),
      ]),
    );
    expect(ends).toEqual({
      chatml: ["Hello!<|im_end|>", "4<|im_end|>"],
      llama3: ["Hello!<|eot_id|>", "4<|eot_id|>"],
      gemma: ["Hello!<end_of_turn>", "4<end_of_turn>"],
      thinking: [" Hello!", " 4"],
      plain: ["Hello!", "4"],
    });
    // Templates without their own marker end turns with EOS (added as an id, see tokenize).
    expect(
      Object.values(BUILTIN_TEMPLATES)
        .filter((t) => t.eosEndsTurn)
        .map((t) => t.name),
    ).toEqual(["thinking", "plain"]);
  });

  test("every built-in's segments join to the whole render", () => {
    for (const template of Object.values(BUILTIN_TEMPLATES)) {
      for (const addGenerationPrompt of [false, true]) {
        const messages = addGenerationPrompt ? conversation.slice(0, 4) : conversation;
        const segments = conversationSegments(tiny, template, messages, addGenerationPrompt);
        expect(segments.map((s) => s.text).join("")).toBe(
          tiny.applyChatTemplate(messages, { template: template.source, addGenerationPrompt }),
        );
      }
    }
  });
});

describe("resolveTemplate", () => {
  test.skipIf(!qwenDir)("names", () => {
    expect(TEMPLATE_NAMES).toEqual(["tokenizer", "chatml", "llama3", "gemma", "thinking", "plain"]);
    expect(resolveTemplate("chatml", qwen)).toBe(BUILTIN_TEMPLATES.chatml);
    expect(resolveTemplate("plain", tiny)).toBe(BUILTIN_TEMPLATES.plain);
  });

  test.skipIf(!qwenDir)("an unknown name lists the names", () => {
    expect(() => resolveTemplate("chatlm" as "chatml", qwen)).toThrow(OptionsError);
    expect(() => resolveTemplate("chatlm" as "chatml", qwen)).toThrow(
      'resolveTemplate: unknown template "chatlm"; expected one of tokenizer, chatml, llama3, gemma, thinking, plain',
    );
    expect(() => resolveTemplate("toString" as "chatml", qwen)).toThrow(/unknown template "toString"/);
  });

  test.skipIf(!qwenDir)('"tokenizer" is the tokenizer\'s own chat template', () => {
    expect(resolveTemplate("tokenizer", qwen)).toEqual({
      name: "tokenizer",
      source: qwen.chatTemplate,
      specialTokens: [],
      eosEndsTurn: false,
    });
    expect(() => resolveTemplate("tokenizer", tiny, "tokenizeDataset")).toThrow(
      'tokenizeDataset: template "tokenizer": tok512.bin has no chat template; use one of thinking, plain',
    );
  });

  test.skipIf(!qwenDir)("llama3 markers are not in the Qwen2 vocabulary: a clear error", () => {
    expect(() => resolveTemplate("llama3", qwen)).toThrow(
      `resolveTemplate: template "llama3" needs <|start_header_id|>, <|end_header_id|>, <|eot_id|> as single tokens, but ` +
        `${qwen.source} does not encode them as one token each: the model would learn the markers as plain text and generation would not stop ` +
        "at the end of a turn. Templates that fit this tokenizer: tokenizer, chatml, thinking, plain",
    );
  });

  test.skipIf(!qwenDir)("stories260K has no chat tokens: only the plain-text templates fit", () => {
    expect(() => resolveTemplate("llama3", tiny)).toThrow(
      /needs <\|start_header_id\|>, <\|end_header_id\|>, <\|eot_id\|> as single tokens/,
    );
    expect(() => resolveTemplate("gemma", tiny)).toThrow(/Templates that fit this tokenizer: thinking, plain$/);
    expect(() => resolveTemplate("chatml", tiny)).toThrow(/needs <\|im_start\|>, <\|im_end\|> as single tokens/);
    expect(templatesFor(tiny)).toEqual(["thinking", "plain"]);
    expect(templatesFor(qwen)).toEqual(["tokenizer", "chatml", "thinking", "plain"]);
  });

  test("a marker must be found in text as one token, not just exist", () => {
    // "<s>" is BOS for stories260K: a token, and matched in text as that token.
    const custom: ChatTemplate = {
      name: "bos-turns",
      source: "{% for m in messages %}<s>{{ m.content }}{% endfor %}",
      specialTokens: ["<s>"],
      eosEndsTurn: true,
    };
    expect(resolveTemplate(custom, tiny)).toBe(custom);
    expect(() => resolveTemplate({ ...custom, specialTokens: ["<0x0A>"] }, tiny)).toThrow(
      /needs <0x0A> as single tokens, but tok512.bin does not encode it as one token:/,
    );
  });

  test('"tokenizer" works with a tokenizer whose template is given', () => {
    const withTemplate = tokenizerFromJson(llama2cTokenizerJson(bin), llama2cTokenizerConfig(), {
      chatTemplate: BUILTIN_TEMPLATES.thinking.source,
    });
    expect(resolveTemplate("tokenizer", withTemplate).source).toBe(BUILTIN_TEMPLATES.thinking.source);
    expect(templatesFor(withTemplate)).toEqual(["tokenizer", "thinking", "plain"]);
  });
});

describe("prefix stability", () => {
  test.skipIf(!qwenDir)("a template whose text changes once later turns exist is refused", () => {
    // The Qwen2 fixture's template ends every render with a suffix, so a prefix render is not
    // the start of the whole: the assistant's tokens cannot be located.
    expect(() => conversationSegments(qwen, resolveTemplate("tokenizer", qwen), conversation, false)).toThrow(
      'template "tokenizer" is not prefix-stable at message 2: rendering the first 2 message(s) with the generation prompt ' +
        "is not the start of the whole conversation's text, so its assistant tokens cannot be told apart",
    );
  });

  test("a conversation without an assistant turn is one untrained segment", () => {
    expect(conversationSegments(tiny, BUILTIN_TEMPLATES.chatml, [{ role: "user", content: "Hi" }], true)).toEqual([
      { text: "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", trained: false },
    ]);
  });
});
