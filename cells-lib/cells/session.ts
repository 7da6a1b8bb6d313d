/** The notebook's bridge connection: one per kernel, shared by every cell. */

import process from "node:process";
import { BridgeClient, type BridgeOptions } from "../bridge/client.ts";

let current: Promise<BridgeClient> | undefined;

/** The shared connection, (re)attaching when there is none or it was lost. The session name
 * defaults to $THINKCELLS_SESSION or "default". */
export async function bridge(options: BridgeOptions = {}): Promise<BridgeClient> {
  if (current) {
    const client = await current.catch(() => undefined);
    if (client && !client.closed) return client;
  }
  current = BridgeClient.connect({ session: process.env.THINKCELLS_SESSION ?? "default", ...options });
  return current;
}

/** Drops the shared connection (the bridge keeps running for the next kernel). */
export async function disconnect(): Promise<void> {
  const client = await current?.catch(() => undefined);
  client?.close();
  current = undefined;
}
