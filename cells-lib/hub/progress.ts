/** Push progress: @huggingface/hub's commit events folded into file and byte counts, for the
 * caller's onProgress and the progress bar.
 *
 * Under Node the library reports large (LFS) files as hashed gradually but uploaded all at once,
 * and small files only when the commit that carries them succeeds; the counts move at that pace. */
import type { CommitProgressEvent } from "@huggingface/hub";
import { progress } from "../display/progress.ts";
import type { LocalFile } from "./files.ts";

export interface PushProgress {
  /** creating: the repo (and branch); preparing: asking the Hub which files go to LFS storage;
   * hashing and uploading: LFS files; committing: the commit, carrying the small files. */
  phase: "creating" | "preparing" | "hashing" | "uploading" | "committing" | "done";
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** The file being hashed or uploaded, and how far along it is (0–1). */
  file?: { path: string; fraction: number };
}

export type ProgressSink = (p: PushProgress) => void;

const PHASES = { preuploading: "preparing", uploadingLargeFiles: "uploading", committing: "committing" } as const;

export function progressTracker(files: readonly LocalFile[], sinks: readonly ProgressSink[]) {
  const sizes = new Map(files.map((f) => [f.path, f.size]));
  /** Path → uploaded fraction. */
  const uploaded = new Map<string, number>();
  const bytesTotal = files.reduce((sum, f) => sum + f.size, 0);

  const emit = (phase: PushProgress["phase"], file?: PushProgress["file"]) => {
    let filesDone = 0;
    let bytesDone = 0;
    for (const [p, fraction] of uploaded) {
      if (fraction >= 1) filesDone++;
      bytesDone += Math.round(fraction * (sizes.get(p) ?? 0));
    }
    const snapshot: PushProgress = { phase, filesDone, filesTotal: files.length, bytesDone, bytesTotal };
    if (file) snapshot.file = file;
    for (const sink of sinks) sink(snapshot);
  };

  return {
    creating: () => emit("creating"),
    event(e: CommitProgressEvent) {
      if (e.event === "phase") return emit(PHASES[e.phase]);
      if (e.state === "error") return; // the commit fails with the reason
      if (e.state === "uploading") uploaded.set(e.path, e.progress);
      emit(e.state, { path: e.path, fraction: e.progress });
    },
    done() {
      for (const f of files) uploaded.set(f.path, 1);
      emit("done");
    },
  };
}

/** A progress bar over the files, with the bytes sent and the current step after it. Returns the sink
 * and a close() for when the push ends, whether it succeeded or not. */
export function progressBar(label: string, filesTotal: number): { sink: ProgressSink; close(): void } {
  const bar = progress({ total: filesTotal, label, unit: "file" });
  return {
    sink(p) {
      const step = p.file ? `${p.phase} ${p.file.path} ${Math.floor(p.file.fraction * 100)}%` : p.phase;
      bar.tick(p.filesDone - bar.count, { sent: `${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}`, step });
    },
    close: () => bar.done(),
  };
}

/** "512 B", "4.1 kB", "10.5 MB", "1.2 GB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  for (; bytes >= 1000 && i < units.length - 1; i++) bytes /= 1000;
  return i === 0 ? `${bytes} B` : `${bytes.toFixed(1)} ${units[i]}`;
}
