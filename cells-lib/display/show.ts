/** `show(value)`: the richest output for a value, as Jupyter front ends know them. */
import { inspect } from "node:util";
import { chartBundle, type Figure } from "./chart.ts";
import { isPlainObject, toPlainJson } from "./plain-json.ts";
import { currentRenderer } from "./renderer.ts";
import { reportDisplayError } from "./report.ts";
import { tableBundle } from "./table.ts";
import type { MimeBundle } from "./types.ts";

/** The method through which objects describe their own rich output (Deno's kernel uses the
 * same symbol, so such objects also render as a cell's result there). */
export const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");

const MIME_TYPE = /^[a-z]+\/[a-z0-9.+-]+$/i;

/** Shows a MIME bundle as it is; an object with a `[Symbol.for("Jupyter.display")]()` method
 * through that method; a plotly figure as a chart; an array of records as a table; text as
 * text; anything else as inspected text (plain objects also as JSON). */
export function show(value: unknown): void {
  const renderer = currentRenderer();
  const bundle = bundleFor(value);
  if (bundle instanceof Promise) bundle.then((b) => renderer.display(b), reportDisplayError);
  else renderer.display(bundle);
}

export function bundleFor(value: unknown): MimeBundle | Promise<MimeBundle> {
  if (typeof value === "string") return { "text/plain": value };
  const displayable = selfDisplay(value);
  if (displayable) return displayable();
  if (isMimeBundle(value)) return value;
  if (isFigure(value)) return chartBundle(value);
  if (Array.isArray(value) && value.length > 0 && value.every(isPlainObject)) return tableBundle(value);
  if (value instanceof Error) return { "text/plain": value.stack ?? `${value.name}: ${value.message}` };
  const text = inspect(value, { depth: 4, colors: false });
  if (isPlainObject(value)) {
    try {
      return { "application/json": toPlainJson(value) as object, "text/plain": text };
    } catch {
      // A cycle: the inspected text (which marks cycles) is all that can be shown.
    }
  }
  return { "text/plain": text };
}

/** A MIME bundle: a plain object whose keys are all MIME types with string or object values. */
export function isMimeBundle(value: unknown): value is MimeBundle {
  if (!isPlainObject(value)) return false;
  const entries = Object.entries(value);
  return (
    entries.length > 0 &&
    entries.every(([k, v]) => MIME_TYPE.test(k) && (typeof v === "string" || (typeof v === "object" && v !== null)))
  );
}

function isFigure(value: unknown): value is Figure {
  if (!isPlainObject(value) || !Array.isArray(value.data)) return false;
  return (
    Object.keys(value).every((k) => ["data", "layout", "config", "frames"].includes(k)) &&
    value.data.every(isPlainObject)
  );
}

function selfDisplay(value: unknown): (() => Promise<MimeBundle>) | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const method: unknown = (value as Record<symbol, unknown>)[JUPYTER_DISPLAY];
  if (typeof method !== "function") return undefined;
  return async () => {
    const bundle: unknown = await method.call(value);
    if (!isMimeBundle(bundle))
      throw new TypeError('[Symbol.for("Jupyter.display")]() must return a MIME bundle such as { "text/html": "…" }');
    return bundle;
  };
}
