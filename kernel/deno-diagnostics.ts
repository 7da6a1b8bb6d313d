/** Deno's compiler errors read back as message + position: `deno check`'s type errors and its
 * parser's syntax errors, and a cell's syntax error found with Deno's own parser (Deno's kernel
 * answers a cell it cannot parse with only "Execution failed", no message and no position). */
import { execFile } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

const deno = fileURLToPath(new URL("../node_modules/.bin/deno", import.meta.url));

export interface DenoDiagnostic {
  /** "TS2322: Type …" or "SyntaxError: …", with TypeScript's explanation lines; no code frame. */
  message: string;
  /** The file URL Deno names, and the 1-based line and column in it. */
  file: string;
  line: number;
  column: number;
}

/** Runs the project's deno with `input` on stdin; its output as plain text. RUST_BACKTRACE set
 * in the environment would otherwise add a Rust backtrace to every error. */
export function runDeno(args: string[], input?: string): Promise<{ code: number; text: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      deno,
      args,
      { env: { ...process.env, NO_COLOR: "1", RUST_BACKTRACE: "0" } },
      (err, stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        resolve({
          code: err ? (typeof code === "number" ? code : 1) : 0,
          text: stdout + stderr || (err?.message ?? ""),
        });
      },
    );
    child.stdin!.end(input ?? "");
  });
}

const HEADER = /^(?:(TS\d+) \[ERROR\]|error): (.*)$/;
// The main location; related information ("The expected type comes from …") is indented more.
const AT = /^ {4}at (\S+):(\d+):(\d+)$/;
// The code frame between message and location: swc's "3 | code" lines, TypeScript's source line
// above a line of carets.
const FRAME = /^\s*\d*\s*\|/;
const CARETS = /^\s*[\^~]+\s*$/;

/** The located errors in deno's output (errors without a position, such as "error: Type checking
 * failed.", are left out). */
export function parseDenoDiagnostics(output: string): DenoDiagnostic[] {
  const found: DenoDiagnostic[] = [];
  const lines = output.split("\n");
  let message: string[] | undefined;
  let inFrame = false;
  lines.forEach((text, i) => {
    const header = HEADER.exec(text);
    if (header) {
      message = [header[1] ? `${header[1]}: ${header[2]}` : header[2]!];
      inFrame = false;
      return;
    }
    if (!message) return;
    const at = AT.exec(text);
    if (at) {
      found.push({ message: message.join("\n"), file: at[1]!, line: Number(at[2]), column: Number(at[3]) });
      message = undefined;
      return;
    }
    inFrame ||= FRAME.test(text) || CARETS.test(text) || CARETS.test(lines[i + 1] ?? "");
    if (!inFrame && text.trim()) message.push(text.trimEnd());
  });
  return found;
}

/** The first syntax error in one cell's code, as Deno's parser reports it (line and column
 * within the cell), or undefined when the code parses. */
export async function findSyntaxError(code: string): Promise<DenoDiagnostic | undefined> {
  // fmt only parses: no imports resolved, no type check; --check keeps the code off stdout.
  const { code: status, text } = await runDeno(["fmt", "--no-config", "--check", "--ext", "ts", "-"], code);
  return status === 0 ? undefined : parseDenoDiagnostics(text)[0];
}
