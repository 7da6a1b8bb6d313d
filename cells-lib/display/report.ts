/** Display failures must not stop a training loop: they are reported, not thrown. */
export function reportDisplayError(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`thinkcells display: could not show an output: ${message}`);
}
