/** The project's Python environment: `.venv/`, which scripts/setup.sh makes from
 * gpu-bridge/requirements.txt. */
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const projectVenv = fileURLToPath(new URL("../../.venv/", import.meta.url));

/** A program of the project's environment (`python`, `jupyter-server`) when set-up made it,
 * else `elsewhere` (default: the same name), looked up on PATH. */
export function venvProgram(name: string, elsewhere = name): string {
  const program = path.join(projectVenv, "bin", name);
  return existsSync(program) ? program : elsewhere;
}
