/** Renderer for tslab, the Node TypeScript kernel. tslab sends one MIME type per message, so
 * each bundle is reduced to the richest type a front end renders without extensions. */
import { createRequire } from "node:module";
import type { DisplayOptions, MimeBundle, Renderer, UpdateOptions } from "./types.ts";

interface TslabDisplay {
  raw(contentType: string, content: string): void;
}

interface Tslab {
  display: TslabDisplay;
  /** A display whose later calls replace its first output (update_display_data). */
  newDisplay(): TslabDisplay;
}

const PREFERRED = ["text/html", "image/svg+xml", "text/markdown", "text/plain"];

/** tslab's module when this process is tslab's kernel. tslab's displays only work through the
 * copy of the module that the kernel itself loaded, so it is required relative to the
 * kernel's main script (…/node_modules/tslab/bin/tslab), never from this library's folder. */
export function findTslab(): Tslab | undefined {
  try {
    const main = createRequire(import.meta.url).main?.filename;
    if (!main?.split(/[\\/]/).includes("tslab")) return undefined;
    const tslab: unknown = createRequire(main)("tslab");
    if (typeof tslab !== "object" || tslab === null) return undefined;
    const t = tslab as Partial<Tslab>;
    return typeof t.newDisplay === "function" && typeof t.display?.raw === "function" ? (tslab as Tslab) : undefined;
  } catch {
    return undefined;
  }
}

export class TslabRenderer implements Renderer {
  private readonly live = new Map<string, TslabDisplay>();

  constructor(private readonly tslab: Tslab) {}

  display(bundle: MimeBundle, options: DisplayOptions = {}): void {
    let target = this.tslab.display;
    if (options.displayId !== undefined) {
      target = this.tslab.newDisplay();
      this.live.set(options.displayId, target);
    }
    send(target, bundle);
  }

  update(bundle: MimeBundle, options: UpdateOptions): void {
    const target = this.live.get(options.displayId);
    if (!target) {
      this.display(bundle, { displayId: options.displayId });
      return;
    }
    send(target, bundle);
    if (options.final) this.live.delete(options.displayId);
  }
}

function send(target: TslabDisplay, bundle: MimeBundle): void {
  const type = PREFERRED.find((t) => typeof bundle[t] === "string");
  if (type) target.raw(type, bundle[type] as string);
  else target.raw("text/plain", JSON.stringify(bundle, null, 2));
}
