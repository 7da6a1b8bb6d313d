/** A code cell's outputs as HTML: streams, errors and rich displays. */
import { z } from "zod";
import { escapeHtml } from "../cells-lib/display/html.ts";
import { renderBundle } from "./html-mime.ts";
import { joinText, terminalText } from "./html-text.ts";

const Text = z.union([z.string(), z.array(z.string())]).transform(joinText);
const Bundle = z.record(z.string(), z.unknown());

const Output = z.discriminatedUnion("output_type", [
  z.object({ output_type: z.literal("stream"), name: z.string(), text: Text }),
  z.object({ output_type: z.literal("display_data"), data: Bundle }),
  z.object({ output_type: z.literal("execute_result"), data: Bundle }),
  z.object({ output_type: z.literal("error"), ename: z.string(), evalue: z.string(), traceback: z.array(z.string()) }),
]);
type Item = z.infer<typeof Output> | { output_type: "unreadable"; what: string };

export interface CellError {
  ename: string;
  evalue: string;
}

export interface RenderedOutputs {
  html: string;
  /** Some output is a plotly chart. */
  chart: boolean;
  errors: CellError[];
}

export function renderOutputs(outputs: unknown): RenderedOutputs {
  const parts: string[] = [];
  const errors: CellError[] = [];
  let chart = false;
  for (const item of mergeStreams((Array.isArray(outputs) ? outputs : []).map(readOutput))) {
    switch (item.output_type) {
      case "stream": {
        const kind = item.name === "stderr" ? "stderr" : "stdout";
        parts.push(`<pre class="stream ${kind}">${escapeHtml(terminalText(item.text))}</pre>`);
        break;
      }
      case "error":
        errors.push({ ename: terminalText(item.ename), evalue: terminalText(item.evalue) });
        parts.push(errorHtml(item.ename, item.evalue, item.traceback));
        break;
      case "unreadable":
        parts.push(`<p class="output-note">(an output the report cannot read: ${escapeHtml(item.what)})</p>`);
        break;
      default: {
        const rendered = renderBundle(item.data);
        chart ||= rendered.chart;
        parts.push(rendered.html);
      }
    }
  }
  return { html: parts.join("\n"), chart, errors };
}

function readOutput(raw: unknown): Item {
  const parsed = Output.safeParse(raw);
  if (parsed.success) return parsed.data;
  const type = typeof raw === "object" && raw !== null ? (raw as { output_type?: unknown }).output_type : undefined;
  return {
    output_type: "unreadable",
    what: typeof type === "string" ? `output_type "${type}"` : "not an nbformat output",
  };
}

/** Kernels send a stream in many small messages; joined, a progress line's "\r" redraws
 * replace each other as in a terminal instead of piling up. */
function mergeStreams(items: Item[]): Item[] {
  const merged: Item[] = [];
  for (const item of items) {
    const last = merged.at(-1);
    if (item.output_type === "stream" && last?.output_type === "stream" && last.name === item.name) {
      merged[merged.length - 1] = { ...last, text: last.text + item.text };
    } else {
      merged.push(item);
    }
  }
  return merged;
}

function errorHtml(ename: string, evalue: string, traceback: string[]): string {
  const head = `<div class="error-head">${escapeHtml(terminalText(`${ename}: ${evalue}`))}</div>`;
  const trace = traceback.length > 0 ? `<pre>${escapeHtml(terminalText(traceback.join("\n")))}</pre>` : "";
  return `<div class="output-error">${head}${trace}</div>`;
}
