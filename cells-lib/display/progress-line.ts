/** A progress bar's numbers (rate, ETA) and its text, from one snapshot of the counts. */
import { formatDuration, formatNumber } from "./format.ts";

export interface ProgressSnapshot {
  label?: string;
  /** What one item is called in the rate ("it" → "12.5 it/s"). */
  unit: string;
  count: number;
  total: number;
  elapsedMs: number;
  /** The latest values given with tick(): loss, reward, … */
  info: Readonly<Record<string, number | string>>;
  done: boolean;
}

export interface ProgressParts {
  label?: string;
  fraction: number;
  counts: string;
  percent: string;
  rate: string;
  time: string;
  info: string;
}

/** Items per second since the start; undefined until there is something to divide. */
export function progressRate(s: ProgressSnapshot): number | undefined {
  return s.count > 0 && s.elapsedMs > 0 ? s.count / (s.elapsedMs / 1000) : undefined;
}

/** Time left at the average rate so far. */
export function progressEtaMs(s: ProgressSnapshot): number | undefined {
  const rate = progressRate(s);
  return rate === undefined ? undefined : (Math.max(0, s.total - s.count) / rate) * 1000;
}

/** A bar closed short of its total was stopped (interrupted, failed, stopped early): it must not read as complete. */
function finished(s: ProgressSnapshot, elapsed: string): string {
  return s.count < s.total ? `stopped after ${elapsed}` : `done in ${elapsed}`;
}

export function progressParts(s: ProgressSnapshot): ProgressParts {
  const fraction = s.total > 0 ? Math.min(1, Math.max(0, s.count / s.total)) : 1;
  const eta = progressEtaMs(s);
  const elapsed = formatDuration(s.elapsedMs);
  const parts: ProgressParts = {
    fraction,
    counts: `${formatNumber(s.count)}/${formatNumber(s.total)}`,
    percent: `${Math.floor(fraction * 100)}%`,
    rate: rateText(progressRate(s), s.unit),
    time: s.done ? finished(s, elapsed) : `elapsed ${elapsed}  ETA ${eta === undefined ? "?" : formatDuration(eta)}`,
    info: Object.entries(s.info)
      .map(([k, v]) => `${k}=${typeof v === "number" ? formatNumber(v) : v}`)
      .join(" "),
  };
  if (s.label !== undefined) parts.label = s.label;
  return parts;
}

/** One line: `label 37/100  37% [#########---------------] 12.3 it/s  elapsed 0:03  ETA 0:05  loss=0.53`. */
export function progressLine(s: ProgressSnapshot, barWidth = 24): string {
  const p = progressParts(s);
  const filled = Math.round(p.fraction * barWidth);
  const bar = `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}]`;
  return [p.label, p.counts, p.percent.padStart(4), bar, p.rate, p.time, p.info].filter((x) => x).join("  ");
}

/** "12.3 it/s"; below one item per second, seconds per item ("2.50 s/it") reads better. */
function rateText(rate: number | undefined, unit: string): string {
  if (rate === undefined) return `? ${unit}/s`;
  if (rate >= 1) return `${fixed(rate)} ${unit}/s`;
  return `${fixed(1 / rate)} s/${unit}`;
}

function fixed(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}
