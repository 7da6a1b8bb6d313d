/** The rollout inspector as plain text: per group a table of completions with their rewards,
 * advantage, mean and lowest token log-prob (the shading itself needs the HTML form). */
import { formatNumber } from "../display/format.ts";
import { tableModel } from "../display/table-model.ts";
import { tableText } from "../display/table-text.ts";
import type { RolloutInspection } from "./inspect-rollouts.ts";
import { advantageText } from "./rollouts-html.ts";

export function rolloutsText(view: Omit<RolloutInspection, "bundle">): string {
  const lines = [
    `${view.algo.toUpperCase()} step ${view.step}: ${view.groups.length} groups (tokens shaded in the HTML form)`,
  ];
  view.groups.forEach((g, i) => {
    const notes = [
      g.reference === undefined ? "" : `  (reference ${g.reference})`,
      g.trained ? "" : "  (not trained on)",
    ];
    lines.push(`prompt ${i + 1}: ${g.prompt.replace(/\r?\n/g, "↵")}${notes.join("")}`);
    const rows = g.completions.map((c, j) => {
      const lowest = c.tokens.reduce<(typeof c.tokens)[number] | undefined>(
        (low, t) => (low === undefined || t.logprob < low.logprob ? t : low),
        undefined,
      );
      const meanLogprob = c.tokens.reduce((s, t) => s + t.logprob, 0) / Math.max(1, c.tokens.length);
      return {
        "#": j + 1,
        ...Object.fromEntries(view.rewardNames.map((name) => [name, c.rewards[name] ?? "—"])),
        total: c.total ?? "—",
        advantage: advantageText(c),
        "mean log p": c.tokens.length ? Number(formatNumber(meanLogprob)) : "—",
        "lowest log p": lowest ? `${formatNumber(lowest.logprob)} ${JSON.stringify(lowest.text)}` : "—",
        completion: c.text,
      };
    });
    lines.push(
      ...tableText(tableModel(rows, { maxRows: 1000 }))
        .split("\n")
        .map((l) => `  ${l}`),
    );
  });
  if (view.omittedGroups > 0) lines.push(`… ${view.omittedGroups} more groups (option maxGroups)`);
  return lines.join("\n");
}
