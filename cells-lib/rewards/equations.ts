/** Finds the arithmetic a reasoning states (`16 - 3 - 4 = 9`, `$10 x 1.2 = $12`,
 * `3 * (16.50 + 22.50 + 42) = $243`, `8+7=15`) and checks each against its own numbers. */
import { evaluate, type Token, tokenize } from "./arithmetic.ts";
import { isComputed } from "./numbers.ts";

export interface Equation {
  /** As written, from the first character of the left side to the last of the right. */
  text: string;
  holds: boolean;
}

/** GSM8K's calculator notes (`<<48/2=24>>`). */
const ANNOTATION = /<<([^<>]*)>>/g;

/**
 * Every `left = right` whose sides are both pure arithmetic (numbers, `+ - * × x / ÷`,
 * parentheses, `$`, `%`, thousands commas) and at least one of which computes something (an
 * operator or a fraction). A chain `a = b = c` gives one equation per `=`. Sides with words in
 * them (`20 sheep + 160 sheep`, `2L = 22 - 8`, `$20/hour * 35 hours`) are not arithmetic and
 * are skipped, never guessed at, so only the purely numeric links count (`22 - 8 = 14`).
 * Calculator notes are checked as equations of their own, and the prose around them is read
 * with them removed.
 */
export function findEquations(reasoning: string): Equation[] {
  const notes = [...reasoning.matchAll(ANNOTATION)].map((m) => m[1]!);
  return [...notes, reasoning.replace(ANNOTATION, "")].flatMap(equationsIn);
}

interface Side {
  tokens: Token[];
  value: number | null;
  /** With `%` ignored. */
  labelled: number | null;
}

function equationsIn(text: string): Equation[] {
  const equations: Equation[] = [];
  for (const run of split(tokenize(text), "break")) {
    const sides: Side[] = trimParentheses(split(run, "=")).map((tokens) => ({
      tokens,
      value: evaluate(tokens),
      labelled: evaluate(tokens, true),
    }));
    for (let i = 1; i < sides.length; i++) {
      const left = sides[i - 1]!;
      const right = sides[i]!;
      if (left.value === null || right.value === null || !(computes(left) || computes(right))) continue;
      equations.push({ text: text.slice(left.tokens[0]!.start, right.tokens.at(-1)!.end), holds: agree(left, right) });
    }
  }
  return equations;
}

function split(tokens: readonly Token[], kind: Token["kind"]): Token[][] {
  const parts: Token[][] = [[]];
  for (const t of tokens) {
    if (t.kind === kind) parts.push([]);
    else parts.at(-1)!.push(t);
  }
  return parts.filter((p) => p.length > 0 || kind === "=");
}

/** Drops the parentheses of prose around an equation (`(so 3*4 = 12)`): unmatched ones at the
 * start of the first side and the end of the last. An unmatched `)` at the end of the first
 * side means its start lies in the words before (`30 x (1 and 1/3) = 40`), so it stays and
 * spoils that side. */
function trimParentheses(sides: Token[][]): Token[][] {
  const depth = (side: Token[]) => side.reduce((d, t) => d + (t.kind === "(" ? 1 : t.kind === ")" ? -1 : 0), 0);
  let first = sides[0]!;
  while (depth(first) > 0 && first[0]?.kind === "(") first = first.slice(1);
  const trimmed = [first, ...sides.slice(1)];
  let last = trimmed.at(-1)!;
  while (depth(last) < 0 && last.at(-1)?.kind === ")") last = last.slice(0, -1);
  return [...trimmed.slice(0, -1), last];
}

function computes(side: Side): boolean {
  return side.tokens.some((t) => t.kind === "operator" || (t.kind === "number" && isComputed(t.literal)));
}

/** `%` is read both ways: as ÷100 (`$50,000 * 50% = $25,000`, `3/4 = 75%`) and as a label on
 * a percentage worked out by hand (`18 / 450 x 100 = 4%`). */
function agree(a: Side, b: Side): boolean {
  return (
    close(a.value!, b.value!, Math.max(roundingOf(a, false), roundingOf(b, false))) ||
    close(a.labelled!, b.labelled!, Math.max(roundingOf(a, true), roundingOf(b, true)))
  );
}

/** Exact up to floating-point error, which 1e-9 relative covers (`0.1+0.2=0.3`). */
const RELATIVE_TOLERANCE = 1e-9;

function close(a: number, b: number, rounding: number): boolean {
  return Math.abs(a - b) <= Math.max(rounding, RELATIVE_TOLERANCE * Math.max(Math.abs(a), Math.abs(b)));
}

/** A side that is one decimal number may be rounded to the places it shows (`31 / 3 = 10.33`):
 * half a unit in its last place. Whole numbers get no slack, so `13 / 6 = 2` is false. */
function roundingOf(side: Side, percentAsLabel: boolean): number {
  const [t] = side.tokens;
  if (side.tokens.length !== 1 || t?.kind !== "number") return 0;
  const places = /\.(\d+)$/.exec(t.literal)?.[1]?.length;
  if (places === undefined) return 0;
  return (0.5 * 10 ** -places) / (t.percent && !percentAsLabel ? 100 : 1);
}
