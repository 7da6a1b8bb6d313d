/** The thinkcells kernel (kernel/launch.sh) starts Deno in the project directory so its deno.json
 * maps "thinkcells"; importing thinkcells moves the kernel back to the notebook's directory, so
 * relative paths in cells mean what the notebook's author expects. */
type DenoLike = { env: { get(name: string): string | undefined }; chdir(dir: string): void };

const deno = (globalThis as { Deno?: DenoLike }).Deno;
if (deno) {
  let notebookDir: string | undefined;
  try {
    notebookDir = deno.env.get("THINKCELLS_NOTEBOOK_DIR");
  } catch {
    // `deno run` without --allow-env: not in the kernel, nothing to restore.
  }
  if (notebookDir) deno.chdir(notebookDir);
}
