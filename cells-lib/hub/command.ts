/** `thinkcells push OUT_DIR REPO_ID`: pushToHub from the command line. */
import process from "node:process";
import { parseArgs } from "node:util";
import { formatBytes } from "./progress.ts";
import { pushToHub } from "./push.ts";

export const pushUsage = "thinkcells push OUT_DIR REPO_ID [--private] [--revision R] [--endpoint URL] [--message M]";

/** Wrong arguments. Its code has the prefix of node:util parseArgs's own errors, so the CLI
 * answers both with the usage text. */
export class PushUsageError extends Error {
  override name = "PushUsageError";
  readonly code = "ERR_PARSE_ARGS_PUSH";
}

/** The token comes from HF_TOKEN only: a command-line argument would show in `ps` and shell history. */
export async function pushCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      private: { type: "boolean" },
      revision: { type: "string" },
      endpoint: { type: "string" },
      message: { type: "string" },
    },
  });
  if (positionals.length !== 2) throw new PushUsageError(`push expects OUT_DIR and REPO_ID, got ${positionals.length} argument${positionals.length === 1 ? "" : "s"}`);
  const [dir, repoId] = positionals as [string, string];
  // The progress bar goes to stderr (the terminal renderer's place for it); the result to stdout.
  const result = await pushToHub(dir, repoId, {
    ...(values.private && { private: true }),
    ...(values.revision !== undefined && { revision: values.revision }),
    ...(values.endpoint !== undefined && { endpoint: values.endpoint }),
    ...(values.message !== undefined && { commitMessage: values.message }),
  });
  process.stdout.write(
    `${result.created ? "created and pushed to" : "pushed to"} ${result.repoUrl}: ${result.files} file${result.files === 1 ? "" : "s"}, ` +
      `${formatBytes(result.bytes)}, commit ${result.commitUrl}\n`,
  );
}
