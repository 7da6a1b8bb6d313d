/** What a training cell shows while it runs: a live chart of its metrics and a progress bar,
 * or nothing (display: false, for loops that draw their own). */
import { type LiveChart, liveChart } from "../display/live-chart.ts";
import { type Progress, progress } from "../display/progress.ts";

export interface Monitor {
  /** Records the chart's metrics found in `metrics` at `step` (null: a gap); `tick` advances the bar. */
  record(step: number, metrics: object, tick?: boolean): void;
  close(): void;
}

export function trainingMonitor(options: {
  title: string;
  metrics: string[];
  totalSteps: number;
  display: boolean;
  barInfo?: string[];
}): Monitor {
  if (!options.display) return { record() {}, close() {} };
  const chart: LiveChart = liveChart({ title: options.title, metrics: options.metrics });
  const bar: Progress = progress({ total: options.totalSteps, label: options.title, unit: "step" });
  const barInfo = options.barInfo ?? options.metrics.slice(0, 2);
  return {
    record(step, metrics, tick = false) {
      const all = metrics as Record<string, unknown>;
      const values = Object.fromEntries(
        options.metrics.flatMap((k) =>
          typeof all[k] === "number" ? [[k, all[k]]] : all[k] === null ? [[k, Number.NaN]] : [],
        ),
      );
      chart.push(step, values);
      if (tick) {
        const info = Object.fromEntries(
          barInfo.flatMap((k) => (typeof all[k] === "number" ? [[k, Number((all[k] as number).toPrecision(4))]] : [])),
        );
        bar.tick(1, info);
      }
    },
    close() {
      chart.close();
      bar.done();
    },
  };
}
