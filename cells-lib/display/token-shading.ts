/** Text shown token by token, each token's background shaded by a value (its log-prob, entropy,
 * advantage), with the values in a tooltip and in data- attributes (for scripts and tests). */
import { formatNumber } from "./format.ts";
import { escapeHtml } from "./html.ts";

export interface ShadedToken {
  text: string;
  /** -1 (full red) … 0 (none) … 1 (full green); null: no shading. */
  shade: number | null;
  /** Shown on hover and written as data-<name> attributes. */
  values: Readonly<Record<string, number | string | null>>;
}

const RED = "214,39,40";
const GREEN = "44,160,44";

/** Background for a shade: red below 0, green above, stronger farther from 0. */
export function shadeColor(shade: number): string {
  const a = Math.min(1, Math.abs(shade));
  return `rgba(${shade < 0 ? RED : GREEN},${Number((0.75 * a).toFixed(3))})`;
}

export function shadedTokensHtml(tokens: readonly ShadedToken[]): string {
  return tokens
    .map((t) => {
      const style = t.shade === null || t.shade === 0 ? "" : ` style="background:${shadeColor(t.shade)}"`;
      const title = [
        JSON.stringify(t.text),
        ...Object.entries(t.values).map(([k, v]) => `${k} ${typeof v === "number" ? formatNumber(v) : (v ?? "—")}`),
      ].join(" · ");
      // Full precision in the data attributes: they are the values, the title is for reading.
      const data = Object.entries(t.values)
        .map(([k, v]) => ` data-${k.toLowerCase().replace(/[^a-z0-9-]/g, "-")}="${escapeHtml(String(v ?? ""))}"`)
        .join("");
      return `<span class="tc-token"${style} title="${escapeHtml(title)}"${data}>${escapeHtml(visible(t.text))}</span>`;
    })
    .join("");
}

/** A newline shows as ↵ before the break; a token that adds no text yet (the first byte of a
 * multi-byte character) as a dot, so it can still be hovered. */
function visible(text: string): string {
  if (text === "") return "·";
  return text.replace(/\r?\n/g, "↵\n");
}

/** A small legend: what full red and full green (or none) mean. */
export function shadeLegendHtml(low: string, high: string, diverging: boolean): string {
  const swatch = (shade: number, label: string) =>
    `<span style="background:${shadeColor(shade)};padding:0 4px;border-radius:2px">${escapeHtml(label)}</span>`;
  return diverging ? `${swatch(-1, low)} … ${swatch(1, high)}` : `${swatch(-1, low)} … ${escapeHtml(high)}`;
}
