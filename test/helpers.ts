/** Shared set-up for tests that talk to a real bridge: each test file gets its own bridge
 * directory and session, and shuts its bridges down afterwards. */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BridgeClient } from "../cells-lib/bridge/client.ts";

export const shared = path.resolve(import.meta.dirname, "../../shared");
export const stories = path.join(shared, "fixtures/stories260K");
export const repoRoot = path.resolve(import.meta.dirname, "..");

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `thinkcells-${prefix}-`));
}

/** A fresh bridge directory and a way to connect clients to it. */
export function testBridge(session: string) {
  const dir = tempDir(`bridge-${session}`);
  const clients: BridgeClient[] = [];
  return {
    dir,
    session,
    async connect(): Promise<BridgeClient> {
      const client = await BridgeClient.connect({ session, dir, idleTimeoutS: 60 });
      clients.push(client);
      return client;
    },
    async stop(): Promise<void> {
      const live = clients.find((c) => !c.closed);
      if (live) await live.shutdown().catch(() => {});
      for (const c of clients) c.close();
    },
  };
}
