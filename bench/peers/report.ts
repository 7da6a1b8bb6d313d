/** The comparison's rows: each metric on both sides (mean ± sd over the runs), thinkcells / TRL, and the
 * issue's target where it has one (reported, never asserted: timings on shared machines are noisy). */

export interface Stat {
  mean: number;
  /** Sample standard deviation (n − 1); 0 for a single run. */
  sd: number;
  values: number[];
}

export function stat(values: readonly number[]): Stat {
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const sd = values.length > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1)) : 0;
  return { mean, sd, values: [...values] };
}

export type Target = "3x_faster" | "no_slower" | "no_higher" | "within_sd";

export interface Row {
  name: string;
  unit: string;
  better: "lower" | "higher";
  thinkcells: Stat;
  trl: Stat;
  /** thinkcells' mean / TRL's mean; null when TRL's is 0. */
  ratio: number | null;
  target: string;
  /** Whether the target is met; null where the row has none. */
  met: boolean | null;
  note: string;
}

const TARGETS: Record<Target, { text: string; met: (tc: Stat, trl: Stat) => boolean }> = {
  // Seconds per step: thinkcells' at most a third of TRL's.
  "3x_faster": { text: "≥ 3× faster", met: (tc, trl) => tc.mean <= trl.mean / 3 },
  no_slower: { text: "no slower", met: (tc, trl) => tc.mean >= trl.mean },
  no_higher: { text: "no higher", met: (tc, trl) => tc.mean <= trl.mean },
  // Equal or better: thinkcells' mean at least TRL's minus the larger of the two sds.
  within_sd: { text: "≥ TRL − 1 sd", met: (tc, trl) => tc.mean >= trl.mean - Math.max(tc.sd, trl.sd) },
};

export function row(
  name: string,
  unit: string,
  better: Row["better"],
  values: { thinkcells: readonly number[]; trl: readonly number[] },
  note: string,
  target?: Target,
): Row {
  const tc = stat(values.thinkcells);
  const trl = stat(values.trl);
  const ratio = trl.mean === 0 ? null : tc.mean / trl.mean;
  return {
    name,
    unit,
    better,
    thinkcells: tc,
    trl,
    ratio,
    target: target ? TARGETS[target].text : "",
    met: target ? TARGETS[target].met(tc, trl) : null,
    note,
  };
}

/** Three significant digits at most, whole numbers above 100 (with thousands separators). */
function number(v: number, unit: string): string {
  const digits = unit === "fraction" ? 3 : Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function format(s: Stat, unit: string): string {
  return s.values.length > 1 ? `${number(s.mean, unit)} ± ${number(s.sd, unit)}` : number(s.mean, unit);
}

/** The rows as a Markdown table (what bench/README.md shows). */
export function markdownTable(rows: readonly Row[]): string {
  const lines = [
    "| row | unit | thinkcells | TRL | thinkcells / TRL | target | met |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.unit} | ${format(r.thinkcells, r.unit)} | ${format(r.trl, r.unit)} | ${r.ratio === null ? "—" : r.ratio.toFixed(2)} | ` +
        `${r.target} | ${r.met === null ? "" : r.met ? "yes" : "no"} |`,
    ),
  ];
  return lines.join("\n");
}
