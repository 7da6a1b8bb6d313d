/** SVG building blocks: elements, short coordinates, text as plotly writes it, text widths. */
import { escapeHtml } from "../html.ts";

/** plotly.js's default font and text colour. */
export const FONT = "'Open Sans', verdana, arial, sans-serif";
export const TEXT_COLOR = "#444";

/** A pixel coordinate with one decimal: finer is invisible and only makes the image larger. */
export function px(x: number): string {
  return String(Math.round(x * 10) / 10);
}

/** `<name a="1" …>children</name>`; undefined attributes are left out. */
export function el(name: string, attributes: Record<string, string | number | undefined>, children = ""): string {
  const attrs = Object.entries(attributes)
    .map(([k, v]) => (v === undefined ? "" : ` ${k}="${escapeHtml(typeof v === "number" ? px(v) : v)}"`))
    .join("");
  return children === "" ? `<${name}${attrs}/>` : `<${name}${attrs}>${children}</${name}>`;
}

export interface TextOptions {
  size?: number;
  anchor?: "start" | "middle" | "end";
  /** Vertical placement of the block of lines around y. */
  baseline?: "top" | "middle" | "bottom";
  rotate?: number;
  color?: string;
  bold?: boolean;
}

/** Text at (x, y); plotly's `<br>` starts a new line and other tags are dropped. */
export function text(x: number, y: number, value: string, options: TextOptions = {}): string {
  const size = options.size ?? 12;
  const lines = plotlyLines(value);
  const lineHeight = size * 1.3;
  const block = lineHeight * (lines.length - 1);
  // The first line's baseline: text sits above y ("bottom"), around it, or below it ("top").
  const shift = { top: size * 0.9, middle: size * 0.35 - block / 2, bottom: -block - size * 0.25 };
  const y0 = y + shift[options.baseline ?? "middle"];
  const spans = lines.map((line, i) => el("tspan", { x, y: y0 + i * lineHeight }, escapeHtml(line) || " ")).join("");
  return el(
    "text",
    {
      "font-family": FONT,
      "font-size": size,
      "font-weight": options.bold ? "bold" : undefined,
      fill: options.color ?? TEXT_COLOR,
      "text-anchor": options.anchor ?? "middle",
      transform: options.rotate ? `rotate(${options.rotate} ${px(x)} ${px(y)})` : undefined,
    },
    spans,
  );
}

/** plotly text (a small HTML subset) as plain lines. */
export function plotlyLines(value: string): string[] {
  return value.split(/<br\s*\/?>/i).map((line) =>
    line
      .replace(/<[^>]*>/g, "")
      .replace(/&amp;/g, "&")
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">"),
  );
}

/** About how wide `value` is drawn: the image is made without a browser to measure text in. */
export function textWidth(value: string, size = 12): number {
  return Math.max(0, ...plotlyLines(value).map((line) => [...line].length)) * size * 0.58;
}

/** A plotly title: a string or { text }. */
export function titleText(title: unknown): string | undefined {
  if (typeof title === "string") return title;
  if (typeof title === "object" && title !== null) {
    const t = (title as { text?: unknown }).text;
    if (typeof t === "string") return t;
  }
  return undefined;
}
