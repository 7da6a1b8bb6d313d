/** The contract between what is displayed (bundles) and where it goes (renderers). */

/** A Jupyter MIME bundle: MIME type → content. Text types hold strings; JSON types
 * (`application/json`, `application/vnd.plotly.v1+json`, …) hold plain objects. */
export type MimeBundle = Record<string, string | object>;

/** Where a terminal progress bar is drawn (stderr in a CLI). */
export interface Terminal {
  /** true: redraw one line in place with "\r"; false (a log file, a pipe): print whole lines. */
  readonly isTTY: boolean;
  write(text: string): void;
}

export interface DisplayOptions {
  /** Names the output so later `update` calls replace it (live charts, progress bars). */
  displayId?: string;
}

export interface UpdateOptions {
  displayId: string;
  /** The last update of this output: renderers that skip intermediate updates must show it. */
  final: boolean;
}

/** Shows bundles somewhere: a notebook front end, a terminal, or a test's record. */
export interface Renderer {
  /** A new output (Jupyter's display_data). */
  display(bundle: MimeBundle, options?: DisplayOptions): void;
  /** Replaces the output shown under `displayId` (Jupyter's update_display_data). */
  update(bundle: MimeBundle, options: UpdateOptions): void;
  /** Present when outputs cannot be updated in place: progress bars are drawn here instead. */
  readonly terminal?: Terminal;
}
