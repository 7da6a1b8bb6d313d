/** Renderer for scripts and CLIs: text to stdout, progress bars to stderr. */
import { stderr, stdout } from "node:process";
import type { DisplayOptions, MimeBundle, Renderer, Terminal, UpdateOptions } from "./types.ts";

interface Writable {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface TerminalRendererOptions {
  stdout?: Writable;
  stderr?: Writable;
  /** Live outputs (charts updated during training) are printed at most this often, and once
   * more when they end; printing every update would flood a log. */
  liveEveryMs?: number;
  now?: () => number;
}

export class TerminalRenderer implements Renderer {
  readonly terminal: Terminal;
  private readonly out: Writable;
  private readonly err: Writable;
  private readonly liveEveryMs: number;
  private readonly now: () => number;
  private readonly lastPrinted = new Map<string, number>();
  /** A progress bar is drawn on stderr without its newline yet. */
  private barOpen = false;

  constructor(options: TerminalRendererOptions = {}) {
    this.out = options.stdout ?? stdout;
    this.err = options.stderr ?? stderr;
    this.liveEveryMs = options.liveEveryMs ?? 30_000;
    this.now = options.now ?? Date.now;
    const err = this.err;
    const isTTY = err.isTTY === true;
    this.terminal = {
      isTTY,
      write: (text) => {
        err.write(text);
        if (isTTY) this.barOpen = !text.endsWith("\n");
      },
    };
  }

  display(bundle: MimeBundle, options: DisplayOptions = {}): void {
    // A live output starts empty (no points, 0 steps): its updates carry the news.
    if (options.displayId !== undefined) this.lastPrinted.set(options.displayId, this.now());
    else this.print(bundle);
  }

  update(bundle: MimeBundle, options: UpdateOptions): void {
    const last = this.lastPrinted.get(options.displayId) ?? -Infinity;
    if (!options.final && this.now() - last < this.liveEveryMs) return;
    if (options.final) this.lastPrinted.delete(options.displayId);
    else this.lastPrinted.set(options.displayId, this.now());
    this.print(bundle);
  }

  private print(bundle: MimeBundle): void {
    const text = plainText(bundle);
    // On a shared terminal, text printed after a half-drawn bar would continue its line.
    if (this.barOpen) {
      this.err.write("\r\x1b[K");
      this.barOpen = false;
    }
    this.out.write(text.endsWith("\n") ? text : `${text}\n`);
  }
}

function plainText(bundle: MimeBundle): string {
  const text = bundle["text/plain"];
  if (typeof text === "string") return text;
  return `[output without a text form: ${Object.keys(bundle).join(", ")}]`;
}
