/** Markdown (cells and text/markdown outputs) as HTML. Raw HTML passes through: notebooks are
 * their author's own pages. */
import { Marked, type Token } from "marked";
import { imageDataUri } from "./html-image.ts";

const marked = new Marked({ gfm: true });

/** A cell's attachments: name → MIME bundle, referenced as `![alt](attachment:name)`. */
export type Attachments = Record<string, Record<string, unknown>>;

export function renderMarkdown(source: string, attachments: Attachments = {}): string {
  const tokens = marked.lexer(source);
  // Pasted images live in the cell itself; a data URI keeps the report one offline file.
  marked.walkTokens(tokens, (token: Token) => {
    if (token.type !== "image" || !token.href.startsWith("attachment:")) return;
    const bundle = attachments[decodeURIComponent(token.href.slice("attachment:".length))];
    const uri = bundle && imageDataUri(bundle);
    if (uri) token.href = uri;
  });
  return marked.parser(tokens);
}
