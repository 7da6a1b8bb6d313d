/** `previewDataset(dataset)`: a cell showing a dataset's statistics, length histogram and examples. */
import { chart } from "../display/chart.ts";
import { table } from "../display/table.ts";
import { parseOptions } from "../util/options.ts";
import { computeStats, type DatasetStats, DatasetStatsOptions } from "./stats.ts";
import { textFields } from "./text-fields.ts";
import type { DatasetRow } from "./types.ts";

export interface PreviewableDataset<R> {
  file: string;
  shape?: string;
  rows: readonly DatasetRow<R>[];
}

/** A dataset's row type; for loadDataset's dataset of any shape, the union of the shapes' rows. */
type RowType<D> = D extends PreviewableDataset<infer R extends object> ? R : never;

/** Shows the statistics and returns them. Generic in the whole dataset, not its row type, so a
 * union of datasets (loadDataset without a shape) is accepted. */
export function previewDataset<D extends PreviewableDataset<object>>(
  dataset: D,
  options: DatasetStatsOptions = {},
): DatasetStats<RowType<D>> {
  const rows = dataset.rows as readonly DatasetRow<RowType<D>>[];
  const stats = computeStats(rows, parseOptions(DatasetStatsOptions, options, "previewDataset"));
  const unit = stats.unit === "tokens" ? "tokens" : "characters (no tokenizer given)";
  const name = dataset.shape ? `${dataset.file} (${dataset.shape})` : dataset.file;
  table(
    stats.fields.map(({ field, count, min, mean, p50, p90, p99, max }) => ({
      field,
      rows: count,
      min,
      mean,
      p50,
      p90,
      p99,
      max,
    })),
    {
      title: `${name}: ${plural(stats.rows, "row")}, ${plural(stats.duplicates, "exact duplicate")}; lengths in ${unit}`,
    },
  );
  if (stats.fields.length > 0) chart(lengthHistogram(stats));
  if (stats.examples.length > 0) table(stats.examples.map(exampleRecord), { title: "example rows" });
  return stats;
}

/** One bar trace per field, overlaid; each bar spans its bin. */
function lengthHistogram(stats: DatasetStats<unknown>) {
  return {
    data: stats.fields.map(({ field, histogram: { edges, counts } }) => ({
      type: "bar",
      name: field,
      x: edges.slice(0, -1),
      y: counts,
      width: edges[1]! - edges[0]!,
      offset: 0,
      opacity: 0.6,
    })),
    layout: {
      title: { text: `length per field (${stats.unit})` },
      barmode: "overlay",
      xaxis: { title: { text: stats.unit } },
      yaxis: { title: { text: "rows" } },
    },
  };
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function exampleRecord({ line, row }: DatasetRow<object>): Record<string, unknown> {
  return { line, ...Object.fromEntries([...textFields(row)].map(([field, texts]) => [field, texts.join("\n")])) };
}
