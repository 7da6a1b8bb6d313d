/** Chat templates for SFT: the tokenizer's own, or a named built-in, as Jinja rendered by
 * `Tokenizer.applyChatTemplate`. None of the built-ins writes BOS: the tokenizer's BOS is
 * added as an id (like `sample()` does with `addSpecialTokens`), so it is never doubled. */
import { z } from "zod";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { OptionsError } from "../util/options.ts";

export interface ChatTemplate {
  name: string;
  /** Jinja source, rendered with `messages` and `add_generation_prompt`. */
  source: string;
  /** Markers the template relies on being single tokens of the tokenizer. */
  specialTokens: readonly string[];
  /** True when the template has no end-of-turn marker of its own: the tokenizer's EOS ends
   * each assistant turn (the default of `addEos`). */
  eosEndsTurn: boolean;
}

export const TEMPLATE_NAMES = ["tokenizer", "chatml", "llama3", "gemma", "thinking", "plain"] as const;
export type TemplateName = (typeof TEMPLATE_NAMES)[number];

/** A custom template, for options that take a name or a template. */
export const ChatTemplateSchema = z
  .object({
    name: z.string().min(1),
    source: z.string().min(1),
    specialTokens: z.array(z.string().min(1)),
    eosEndsTurn: z.boolean(),
  })
  .strict();

// Templates are joined from lines so the Jinja needs no whitespace control; "\n" inside a
// Jinja string literal is a newline in the output.
const jinja = (...lines: string[]): string => lines.join("");

export const BUILTIN_TEMPLATES: Record<Exclude<TemplateName, "tokenizer">, ChatTemplate> = {
  /** Qwen's ChatML: `<|im_start|>role\n…<|im_end|>\n`, no default system prompt. */
  chatml: {
    name: "chatml",
    source: jinja(
      "{% for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{% endfor %}",
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    ),
    specialTokens: ["<|im_start|>", "<|im_end|>"],
    eosEndsTurn: false,
  },
  /** Meta's Llama 3 layout (content trimmed as Meta's template does). */
  llama3: {
    name: "llama3",
    source: jinja(
      "{% for message in messages %}",
      "{{ '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content | trim + '<|eot_id|>' }}",
      "{% endfor %}",
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    ),
    specialTokens: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    eosEndsTurn: false,
  },
  /** Gemma: roles user and model; a system message is folded into the first user turn, as
   * Gemma's own template does (it has no system role). */
  gemma: {
    name: "gemma",
    source: jinja(
      "{% if messages and messages[0].role == 'system' %}",
      "{% set system = messages[0].content | trim + '\\n\\n' %}{% set turns = messages[1:] %}",
      "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}",
      // Folding into a model turn would train on the system text: it gets a user turn of its own.
      "{% if system and (not turns or turns[0].role != 'user') %}",
      "{{ '<start_of_turn>user\\n' + system | trim + '<end_of_turn>\\n' }}{% set system = '' %}",
      "{% endif %}",
      "{% for message in turns %}",
      "{{ '<start_of_turn>' + ('model' if message.role == 'assistant' else message.role) + '\\n' }}",
      "{{ (system if loop.first else '') + message.content | trim + '<end_of_turn>\\n' }}",
      "{% endfor %}",
      "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
    ),
    specialTokens: ["<start_of_turn>", "<end_of_turn>"],
    eosEndsTurn: false,
  },
  /** Plain text for small models without chat tokens: `User: 23+45?\nAssistant: <thinking>…
   * </thinking> 68` then EOS. The generation prompt is `Assistant:` with no trailing space: the
   * space belongs to the reply, so the prompt's last token is the same whether the text is
   * tokenized whole or prompt first (byte-level BPE glues a space to the next word, and a
   * prompt ending in a lone space is a token the model never sees in whole text). The
   * reasoning block is the assistant content's own (e.g. toCotDataset with style
   * "thinking"); nothing is prefilled, so completions parse and check as written. */
  thinking: {
    name: "thinking",
    source: jinja(
      "{% for message in messages %}",
      "{% if message.role == 'assistant' %}{{ 'Assistant: ' + message.content | trim + '\\n' }}",
      "{% else %}{{ message.role | capitalize + ': ' + message.content | trim + '\\n' }}{% endif %}",
      "{% endfor %}",
      "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}",
    ),
    specialTokens: [],
    eosEndsTurn: true,
  },
  /** Contents back to back, no markup: a prompt/completion row is prompt + completion + EOS,
   * the text a base model (stories260K) continues. */
  plain: {
    name: "plain",
    source: "{% for message in messages %}{{ message.content }}{% endfor %}",
    specialTokens: [],
    eosEndsTurn: true,
  },
};

/** A template by name (or a custom one), checked against the tokenizer: it must have a chat
 * template for "tokenizer", and every marker a template relies on must be one of its tokens. */
export function resolveTemplate(
  template: TemplateName | ChatTemplate,
  tokenizer: Tokenizer,
  where = "resolveTemplate",
): ChatTemplate {
  const resolved = typeof template === "string" ? byName(template, tokenizer, where) : template;
  const missing = missingTokens(resolved, tokenizer);
  if (missing.length > 0) {
    throw new OptionsError(
      `${where}: template "${resolved.name}" needs ${missing.join(", ")} as single tokens, but ${tokenizer.source} ` +
        `does not encode ${missing.length === 1 ? "it as one token" : "them as one token each"}: the model would learn the markers as plain text and ` +
        `generation would not stop at the end of a turn. Templates that fit this tokenizer: ${templatesFor(tokenizer).join(", ")}`,
    );
  }
  return resolved;
}

/** The template names usable with a tokenizer (its own template, and the built-ins whose
 * markers are all single tokens of it). */
export function templatesFor(tokenizer: Tokenizer): TemplateName[] {
  return TEMPLATE_NAMES.filter((name) =>
    name === "tokenizer"
      ? tokenizer.chatTemplate !== undefined
      : missingTokens(BUILTIN_TEMPLATES[name], tokenizer).length === 0,
  );
}

function byName(name: string, tokenizer: Tokenizer, where: string): ChatTemplate {
  if (name === "tokenizer") {
    if (tokenizer.chatTemplate === undefined) {
      throw new OptionsError(
        `${where}: template "tokenizer": ${tokenizer.source} has no chat template; use one of ${templatesFor(tokenizer).join(", ")}`,
      );
    }
    return { name, source: tokenizer.chatTemplate, specialTokens: [], eosEndsTurn: false };
  }
  if (!Object.hasOwn(BUILTIN_TEMPLATES, name)) {
    throw new OptionsError(`${where}: unknown template "${name}"; expected one of ${TEMPLATE_NAMES.join(", ")}`);
  }
  return BUILTIN_TEMPLATES[name as Exclude<TemplateName, "tokenizer">];
}

// A marker is usable when the tokenizer has it as a token and finds it in text as that one
// token (an added token), rather than spelling it out piece by piece.
function missingTokens(template: ChatTemplate, tokenizer: Tokenizer): string[] {
  return template.specialTokens.filter((marker) => {
    const id = tokenizer.tokenToId(marker);
    const ids = tokenizer.encode(marker);
    return id === undefined || ids.length !== 1 || ids[0] !== id;
  });
}
