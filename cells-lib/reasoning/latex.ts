/** Finds `\boxed{…}` / `\fbox{…}` answers by matching braces, since box contents nest
 * (`\boxed{\frac{1}{2}}`) and regular expressions cannot count. */

export interface Box {
  /** Index of the backslash of `\boxed`. */
  start: number;
  /** Index just past the closing brace (the text's length when unclosed). */
  end: number;
  content: string;
  closed: boolean;
}

/** Every box in the text, in order. A box inside another box is part of the outer one's content. */
export function findBoxes(text: string): Box[] {
  const boxes: Box[] = [];
  const command = /\\(?:boxed|fbox)\s*\{/g;
  for (let match = command.exec(text); match; match = command.exec(text)) {
    const open = match.index + match[0].length;
    const close = matchingBrace(text, open);
    const end = close < 0 ? text.length : close + 1;
    boxes.push({
      start: match.index,
      end,
      content: text.slice(open, close < 0 ? text.length : close),
      closed: close >= 0,
    });
    command.lastIndex = end;
  }
  return boxes;
}

/** Index of the `}` closing a group whose content starts at `from`, or -1. Escaped braces
 * (`\{`, `\}`) are literal characters, not grouping. */
function matchingBrace(text: string, from: number): number {
  let depth = 1;
  for (let i = from; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\\") i++;
    else if (ch === "{") depth++;
    else if (ch === "}" && --depth === 0) return i;
  }
  return -1;
}
