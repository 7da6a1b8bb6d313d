/** Summary of a list of lengths: order statistics and an integer-width histogram. */

export interface Histogram {
  /** Bin i counts the values in [edges[i], edges[i + 1]); all bins have the same width. */
  edges: number[];
  counts: number[];
}

export interface Distribution {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  histogram: Histogram;
}

/** For a non-empty list of integers. Percentiles are nearest-rank, so each is one of the values. */
export function distribution(values: readonly number[], bins: number): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const percentile = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  const min = sorted[0]!;
  const max = sorted[sorted.length - 1]!;
  return {
    count: sorted.length,
    min,
    mean: sorted.reduce((sum, v) => sum + v, 0) / sorted.length,
    p50: percentile(50),
    p90: percentile(90),
    p99: percentile(99),
    max,
    histogram: histogram(sorted, min, max, bins),
  };
}

/** Lengths are integers, so bins get an integer width and hold whole lengths. */
function histogram(values: readonly number[], min: number, max: number, bins: number): Histogram {
  const width = Math.max(1, Math.ceil((max - min + 1) / bins));
  const n = Math.ceil((max - min + 1) / width);
  const counts = new Array<number>(n).fill(0);
  for (const v of values) counts[Math.floor((v - min) / width)]!++;
  return { edges: Array.from({ length: n + 1 }, (_, i) => min + i * width), counts };
}
