/** The rollout inspector as HTML: per group a table of completions (rewards, advantage, tokens
 * shaded). Inline styles only, so it looks the same in a notebook and in the HTML report. */
import { formatNumber } from "../display/format.ts";
import { escapeHtml } from "../display/html.ts";
import { type ShadedToken, shadedTokensHtml, shadeLegendHtml } from "../display/token-shading.ts";
import type { InspectedCompletion, InspectedToken, RolloutInspection, Shade } from "./inspect-rollouts.ts";

/** log p at or below this is full red: the model gave the token under 1% chance. */
const LOGPROB_FLOOR = -5;

type View = Omit<RolloutInspection, "bundle">;

const PAD = "padding:2px 6px;vertical-align:top";

export function rolloutsHtml(view: View): string {
  const scale = shadeScale(view);
  const completions = view.groups.reduce((n, g) => n + g.completions.length, 0);
  const head =
    `<div style="font-weight:bold">${escapeHtml(view.algo.toUpperCase())} step ${view.step}: ` +
    `${view.groups.length} group${view.groups.length === 1 ? "" : "s"}, ${completions} completions; ` +
    `tokens shaded by ${SHADE_NAMES[view.shade]}</div>` +
    `<div style="margin:2px 0 6px">${scale.legend}; hover a token for its values</div>`;
  const groups = view.groups.map((g, i) => {
    const notes = [
      g.reference === undefined ? "" : ` · reference <code>${escapeHtml(g.reference)}</code>`,
      g.trained ? "" : " · <i>not trained on (left out by dynamic sampling)</i>",
    ].join("");
    const header = ["#", ...view.rewardNames, "total", "advantage", "completion"].map(
      (h, c, all) => `<th style="text-align:${c === all.length - 1 ? "left" : "right"};${PAD}">${escapeHtml(h)}</th>`,
    );
    const rows = g.completions.map((c, j) => {
      const cells = [
        String(j + 1),
        ...view.rewardNames.map((name) => number(c.rewards[name] ?? null)),
        number(c.total),
        advantageText(c),
      ].map((text) => `<td style="text-align:right;font-variant-numeric:tabular-nums;${PAD}">${escapeHtml(text)}</td>`);
      const tokens = shadedTokensHtml(c.tokens.map((t) => shaded(t, view.shade, scale.of)));
      const masked = c.kept ? "" : ' <i title="masked out of the loss (overlong)">(masked)</i>';
      cells.push(
        `<td style="text-align:left;white-space:pre-wrap;font-family:monospace;${PAD}">${tokens}${masked}</td>`,
      );
      return `<tr>${cells.join("")}</tr>`;
    });
    return (
      `<div class="rollout-group" style="margin-top:8px"><div><b>Prompt ${i + 1}</b> ` +
      `<span style="white-space:pre-wrap">${escapeHtml(g.prompt)}</span>${notes}</div>` +
      `<table class="thinkcells-table"><thead><tr>${header.join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`
    );
  });
  const more = view.omittedGroups > 0 ? `<div>… ${view.omittedGroups} more groups (option maxGroups)</div>` : "";
  return `<div class="thinkcells-rollouts" style="font-size:13px">${head}${groups.join("")}${more}</div>`;
}

const SHADE_NAMES: Record<Shade, string> = { logprob: "log-prob", entropy: "entropy", advantage: "advantage" };

/** Maps a token's value to a shade, and says what the colours mean. */
function shadeScale(view: View): { of: (t: InspectedToken) => number | null; legend: string } {
  const tokens = view.groups.flatMap((g) => g.completions.flatMap((c) => c.tokens));
  if (view.shade === "logprob") {
    return {
      of: (t) => -Math.min(1, Math.max(0, t.logprob / LOGPROB_FLOOR)),
      legend: shadeLegendHtml(`log p ≤ ${LOGPROB_FLOOR}`, "log p = 0", false),
    };
  }
  if (view.shade === "entropy") {
    const top = Math.max(1e-9, ...tokens.map((t) => t.entropy ?? 0));
    return {
      of: (t) => (t.entropy === null ? null : -t.entropy / top),
      legend: shadeLegendHtml(`entropy ${formatNumber(top)}`, "entropy 0", false),
    };
  }
  const top = Math.max(1e-9, ...tokens.map((t) => Math.abs(t.advantage ?? 0)));
  return {
    of: (t) => (t.advantage === null ? null : t.advantage / top),
    legend: shadeLegendHtml(`advantage −${formatNumber(top)}`, `+${formatNumber(top)}`, true),
  };
}

function shaded(t: InspectedToken, shade: Shade, of: (t: InspectedToken) => number | null): ShadedToken {
  const values: Record<string, number | null> = { id: t.id, logprob: t.logprob, advantage: t.advantage };
  if (t.entropy !== null || shade === "entropy") values.entropy = t.entropy;
  return { text: t.text, shade: of(t), values };
}

function number(x: number | null): string {
  return x === null ? "—" : formatNumber(x);
}

/** One advantage per sequence, or (PPO) the mean of the per-token ones. */
export function advantageText(c: InspectedCompletion): string {
  if (c.advantage === null) return "—";
  if (typeof c.advantage === "number") return formatNumber(c.advantage);
  const mean = c.advantage.reduce((s, a) => s + a, 0) / Math.max(1, c.advantage.length);
  return `${formatNumber(mean)} (mean per token)`;
}
