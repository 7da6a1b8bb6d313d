// Python's str.strip/lstrip/rstrip with an argument, for chat templates.
//
// @huggingface/jinja (0.5.11, still in 0.5.13) implements `s.strip(chars)`, `s.lstrip(chars)`
// and `s.rstrip(chars)` as JS trim(), trimStart() and trimEnd(): the argument is ignored and
// all whitespace goes. Python strips only the given characters, and real templates depend on it:
// Qwen3's writes `content.lstrip('\n')`, so a reply starting with a space lost the space here
// and not in transformers' apply_chat_template. The library does not export its string value
// class, so this takes it from a variable of an Environment and wraps its `builtins` getter to
// put Python's semantics on the three methods when they get an argument (without one, or with
// None, they strip whitespace as before). Importing this module installs it, once.

import { Environment } from "@huggingface/jinja";

type RuntimeValue = { value: unknown; constructor: new (value: unknown) => RuntimeValue };
type Builtins = Map<string, RuntimeValue>;

const sample = new Environment().set("s", "") as unknown as RuntimeValue;
const proto = Object.getPrototypeOf(sample) as object;
const getter = Object.getOwnPropertyDescriptor(proto, "builtins")?.get;
const patched = new WeakSet<Builtins>();

/** Python's strip of `chars` from the start and/or end of `text`. */
export function stripChars(text: string, chars: string, start: boolean, end: boolean): string {
  const set = new Set(chars);
  const codePoints = [...text];
  let from = 0;
  let to = codePoints.length;
  while (start && from < to && set.has(codePoints[from] ?? "")) from++;
  while (end && to > from && set.has(codePoints[to - 1] ?? "")) to--;
  return codePoints.slice(from, to).join("");
}

// If a later version of the library changes these internals, nothing is patched (and the
// renderings in test/chat-templates.test.ts say whether that version still needs it).
if (getter !== undefined) {
  const StringValue = sample.constructor;
  Object.defineProperty(proto, "builtins", {
    configurable: true,
    get(this: RuntimeValue): Builtins {
      const builtins = getter.call(this) as Builtins;
      if (patched.has(builtins)) return builtins;
      patched.add(builtins);
      for (const [name, start, end] of [
        ["strip", true, true],
        ["lstrip", true, false],
        ["rstrip", false, true],
      ] as const) {
        const original = builtins.get(name);
        if (original === undefined || typeof original.value !== "function") continue;
        const FunctionValue = original.constructor;
        const call = original.value as (args: RuntimeValue[], scope: unknown) => RuntimeValue;
        builtins.set(
          name,
          new FunctionValue((args: RuntimeValue[], scope: unknown) => {
            const chars = args[0]?.value;
            if (typeof chars !== "string") return call(args, scope);
            return new StringValue(stripChars(String(this.value), chars, start, end));
          }),
        );
      }
      return builtins;
    },
  });
}
