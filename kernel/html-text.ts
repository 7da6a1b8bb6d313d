/** Text clean-up for the HTML report: nbformat's multiline strings, terminal escapes, and
 * JavaScript placed inside <script>. */

/** nbformat stores text either as one string or as a list of lines (with their newlines). */
export type MultilineString = string | string[];

export function joinText(text: MultilineString): string {
  return Array.isArray(text) ? text.join("") : text;
}

// CSI sequences (colours, cursor moves), OSC sequences (titles, links) ended by BEL or ST,
// and the remaining two-character escapes.
// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** Deno's kernel colours tracebacks and plain-text results; a report shows the bare text. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/** What a terminal would show: a "\r" (progress bars redrawing a line) lets the text after it
 * replace the line so far. */
export function applyCarriageReturns(text: string): string {
  return text
    .replace(/\r\n/g, "\n")
    .split("\n")
    .map((line) => line.slice(line.lastIndexOf("\r") + 1))
    .join("\n");
}

/** Terminal output as plain text. */
export function terminalText(text: string): string {
  return applyCarriageReturns(stripAnsi(text));
}

/** JavaScript source that can sit inside a <script> element: "</script" would end the element
 * early and "<!--" with "<script" would change how the parser finds its end. "\x3C" is "<" in
 * every place such text can occur in JavaScript (strings, templates, regular expressions). */
export function scriptSafe(js: string): string {
  return js.replace(/<(\/script|!--|script)/gi, "\\x3C$1");
}

/** A text MIME value (a string or a list of lines), or undefined if absent or malformed. */
export function mimeText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((line) => typeof line === "string")) return joinText(value);
  return undefined;
}
