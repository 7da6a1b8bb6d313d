/** Images from MIME bundles (outputs and markdown attachments) as data: URIs. */
import { mimeText } from "./html-text.ts";

/** Raster images are stored base64-encoded; the encoder may have wrapped the lines. */
const RASTER = ["image/png", "image/jpeg", "image/gif"];

/** The bundle's image (SVG first: it scales), or undefined without one. */
export function imageDataUri(data: Record<string, unknown>): string | undefined {
  const svg = mimeText(data["image/svg+xml"]);
  if (svg !== undefined) return `data:image/svg+xml;base64,${Buffer.from(svg).toString("base64")}`;
  for (const type of RASTER) {
    const base64 = mimeText(data[type]);
    if (base64 !== undefined) return `data:${type};base64,${base64.replace(/\s+/g, "")}`;
  }
  return undefined;
}
