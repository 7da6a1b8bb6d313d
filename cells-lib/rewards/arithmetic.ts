/** Arithmetic as reasoning writes it, read into tokens and evaluated with the usual precedence
 * by a tiny recursive-descent parser (never `eval`: the text comes from a model). */
import { NUMBER_SOURCE, numberValue } from "./numbers.ts";

type Operator = "+" | "-" | "*" | "/";

export type Token =
  /** `literal` as written, without the `%`. */
  | { kind: "number"; literal: string; value: number; percent: boolean; start: number; end: number }
  | { kind: "operator"; op: Operator; start: number; end: number }
  | { kind: "(" | ")" | "=" | "break"; start: number; end: number };

const TOKEN = new RegExp(
  [
    String.raw`(?<space>[^\S\n]+)`,
    `(?<number>${NUMBER_SOURCE})(?<percent>%?)`,
    String.raw`(?<times>\\times|\\cdot|[*×·⋅])`,
    // A lone `x` is always a times sign (`$10 x 1.2`): as a variable (`2/3 * x = 12`) it still
    // spoils the side it is in, which is what should happen to a side with an unknown.
    String.raw`(?<x>[xX](?!\w))`,
    String.raw`(?<divide>\\div|[/÷])`,
    String.raw`(?<plus>\+)`,
    "(?<minus>[-−–])",
    String.raw`(?<open>\()`,
    String.raw`(?<close>\))`,
    "(?<equals>=)",
    String.raw`(?<other>\w+|[^])`,
  ].join("|"),
  "gy",
);

/** Everything that is not arithmetic (words, punctuation, line breaks) becomes a "break". A
 * minus glued to a number where no operand precedes it is the number's sign (`-3`, `2*-3`),
 * elsewhere subtraction (`45 -40`). */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  TOKEN.lastIndex = 0;
  for (let m = TOKEN.exec(text); m; m = TOKEN.exec(text)) {
    const g = m.groups!;
    if (g.space !== undefined) continue;
    const start = m.index;
    const end = start + m[0].length;
    if (g.number !== undefined) {
      const token = {
        kind: "number" as const,
        literal: g.number,
        value: numberValue(g.number) ?? Number.NaN,
        percent: g.percent === "%",
        start,
        end,
      };
      const [before, last] = [tokens.at(-2), tokens.at(-1)];
      const signed =
        last?.kind === "operator" &&
        last.op === "-" &&
        last.end === start &&
        before?.kind !== "number" &&
        before?.kind !== ")";
      if (signed) tokens.splice(-1, 1, { ...token, value: -token.value, start: last.start });
      else tokens.push(token);
    } else if (g.times !== undefined || g.x !== undefined) tokens.push({ kind: "operator", op: "*", start, end });
    else if (g.divide !== undefined) tokens.push({ kind: "operator", op: "/", start, end });
    else if (g.plus !== undefined) tokens.push({ kind: "operator", op: "+", start, end });
    else if (g.minus !== undefined) tokens.push({ kind: "operator", op: "-", start, end });
    else if (g.open !== undefined) tokens.push({ kind: "(", start, end });
    else if (g.close !== undefined) tokens.push({ kind: ")", start, end });
    else if (g.equals !== undefined) tokens.push({ kind: "=", start, end });
    else tokens.push({ kind: "break", start, end });
  }
  return tokens;
}

/** The value of a whole token list, or null when it is not one well-formed expression
 * (or divides by zero). `%` means ÷100 unless `percentAsLabel`, which ignores it. */
export function evaluate(tokens: readonly Token[], percentAsLabel = false): number | null {
  let at = 0;
  const peekOp = (ops: string): Operator | null => {
    const t = tokens[at];
    return t?.kind === "operator" && ops.includes(t.op) ? t.op : null;
  };
  const expression = (): number | null => binary("+-", term);
  const term = (): number | null => binary("*/", factor);
  const binary = (ops: string, operand: () => number | null): number | null => {
    let value = operand();
    for (let op = peekOp(ops); value !== null && op; op = peekOp(ops)) {
      at++;
      const right = operand();
      value = right === null ? null : apply(op, value, right);
    }
    return value;
  };
  const factor = (): number | null => {
    const t = tokens[at++];
    if (t?.kind === "number")
      return Number.isFinite(t.value) ? (t.percent && !percentAsLabel ? t.value / 100 : t.value) : null;
    if (t?.kind !== "(") return null;
    const inner = expression();
    return tokens[at++]?.kind === ")" ? inner : null;
  };
  const value = expression();
  return at === tokens.length && value !== null && Number.isFinite(value) ? value : null;
}

function apply(op: Operator, a: number, b: number): number | null {
  if (op === "+") return a + b;
  if (op === "-") return a - b;
  if (op === "*") return a * b;
  return b === 0 ? null : a / b;
}
