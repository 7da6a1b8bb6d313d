/** Line numbers for error messages. */

/** The 1-based line of `text` that the character at `offset` is on. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === "\n") line++;
  return line;
}
