/** Axis ticks at round values (1, 2 or 5 times a power of ten) and their labels. */

/** About `target` ticks inside [lo, hi], at multiples of a round step. */
export function niceTicks(lo: number, hi: number, target: number): number[] {
  if (!(hi > lo)) return [lo];
  const step = niceStep((hi - lo) / Math.max(1, target));
  const ticks: number[] = [];
  // Rounded to the step's precision so that 0.1 + 0.2 shows as 0.3.
  for (let i = Math.ceil(lo / step); i * step <= hi + step * 1e-9; i++) ticks.push(roundTo(i * step, step));
  return ticks;
}

export function niceStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough));
  const fraction = rough / power;
  return (fraction <= 1.5 ? 1 : fraction <= 3.5 ? 2 : fraction <= 7.5 ? 5 : 10) * power;
}

function roundTo(value: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(value.toFixed(Math.min(20, decimals)));
}

/** A tick label as plotly writes it: "0.25", "1200", "15k", "2M", "1e-5". */
export function tickLabel(value: number, step: number): string {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e4 && step >= 1000) {
    const [div, suffix] = abs >= 1e9 ? [1e9, "G"] : abs >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    return `${trim((value / div).toFixed(decimalsFor(step / div)))}${suffix}`;
  }
  if (step < 1e-3) {
    const digits = Math.max(0, Math.floor(Math.log10(abs)) - Math.floor(Math.log10(step) + 1e-9));
    return trim(value.toExponential(Math.min(20, digits)).replace("e+", "e"));
  }
  return trim(value.toFixed(decimalsFor(step)));
}

function decimalsFor(step: number): number {
  return Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
}

function trim(text: string): string {
  return text.replace(/(\.\d*?)0+(?=$|e)/, "$1").replace(/\.(?=$|e)/, "");
}
