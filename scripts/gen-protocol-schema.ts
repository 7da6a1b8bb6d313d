/** Writes the JSON Schema the Python bridge validates requests against, from the zod
 * declaration in cells-lib/bridge/protocol.ts. A test fails when the file is stale. */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { protocolJsonSchema } from "../cells-lib/bridge/protocol.ts";

export const schemaPath = fileURLToPath(
  new URL("../gpu-bridge/thinkcells_bridge/protocol.schema.json", import.meta.url),
);

export function renderSchema(): string {
  return `${JSON.stringify(protocolJsonSchema(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(schemaPath, renderSchema());
  console.log(`wrote ${schemaPath}`);
}
