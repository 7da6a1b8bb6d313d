/** The `thinkcells` command: runs cliProgram on the arguments and reports how it went.
 * Exit status: 0 done (help included), 1 the command failed, USAGE_EXIT the command line was not
 * understood. The bridge keeps running for the next command; only this connection is closed. */
import process from "node:process";
import { CommanderError } from "@commander-js/extra-typings";
import { disconnect } from "../cells-lib/cells/session.ts";
import { cliProgram, USAGE_EXIT, UsageError } from "./program.ts";

try {
  await cliProgram().parseAsync(process.argv.slice(2), { from: "user" });
  await disconnect();
} catch (err) {
  await disconnect();
  // Help or version was asked for and printed.
  if (err instanceof CommanderError && err.exitCode === 0) process.exit(0);
  if (err instanceof UsageError) {
    if (err.message) console.error(err.message);
    process.exit(USAGE_EXIT);
  }
  console.error(`thinkcells: ${(err as Error).message}`);
  process.exit(1);
}
