/** How long a cell ran, from the metadata a headless run records. */

export interface CellTiming {
  seconds: number;
  /** ISO timestamp of when the cell started, when known. */
  started?: string;
}

/** `metadata.thinkcells.duration_s` when present, else the span nbclient and papermill record
 * in `metadata.execution` (execute_input → execute_reply). */
export function cellTiming(metadata: Record<string, unknown> | undefined): CellTiming | undefined {
  const execution = field(metadata, "execution");
  const start = field(execution, "iopub.execute_input");
  const end = field(execution, "shell.execute_reply");
  const started = typeof start === "string" ? start : undefined;
  const duration = field(field(metadata, "thinkcells"), "duration_s");
  if (typeof duration === "number" && Number.isFinite(duration)) return { seconds: duration, started };
  if (started === undefined || typeof end !== "string") return undefined;
  const ms = Date.parse(end) - Date.parse(started);
  return Number.isFinite(ms) && ms >= 0 ? { seconds: ms / 1000, started } : undefined;
}

function field(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

/** "0.04 s", "12.3 s", "3 min 05 s", "1 h 02 min". */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min ${String(s).padStart(2, "0")} s`;
}
