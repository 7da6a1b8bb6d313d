/** plotly.js from the installed npm package: its source, which the HTML report inlines, and the
 * places a notebook's page loads it from. Chart outputs carry a small loader, never the ~4.8 MB
 * library: a message that size through the kernel was sometimes lost on its way to the page. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const plotlyFile = () => require.resolve("plotly.js-dist-min/plotly.min.js");

/** Where thinkcells' Jupyter server extension (kernel/server-extension/) serves this checkout's
 * plotly.min.js, below the server's base URL. */
export const SERVER_PLOTLY_PATH = "thinkcells/plotly.min.js";

let source: string | undefined;

/** plotly.min.js, read once. */
export function plotlySource(): string {
  source ??= readFileSync(plotlyFile(), "utf8");
  return source;
}

export interface ScriptSource {
  src: string;
  /** Subresource integrity: the browser runs the script only if its bytes hash to this. */
  integrity?: string;
}

let cdn: ScriptSource | undefined;

/** The same file from jsDelivr's copy of the npm package (byte for byte the package's file, so its
 * hash is known here): for pages without the server extension (VS Code, another Jupyter, an
 * nbconvert HTML file) that are online. */
export function plotlyCdn(): ScriptSource {
  if (cdn === undefined) {
    const pkg = JSON.parse(readFileSync(require.resolve("plotly.js-dist-min/package.json"), "utf8"));
    const digest = createHash("sha384").update(readFileSync(plotlyFile())).digest("base64");
    cdn = {
      src: `https://cdn.jsdelivr.net/npm/plotly.js-dist-min@${pkg.version}/plotly.min.js`,
      integrity: `sha384-${digest}`,
    };
  }
  return cdn;
}
