/** Errors from the bridge, typed so a notebook can tell a bad input from a crash. */

import type { ErrorKind } from "./protocol.ts";

/** Declared once, with the protocol (ERROR_KINDS in protocol.ts): the bridge's own kinds
 * ("bad_input", "invalid_request", "internal", "cancelled") and the client's ("crashed",
 * "start_failed", "not_running", "handshake"). */
export type BridgeErrorKind = ErrorKind;

export class BridgeError extends Error {
  override name = "BridgeError";
  constructor(
    readonly kind: BridgeErrorKind,
    readonly op: string,
    message: string,
    /** The Python traceback, when the failure happened in the bridge. */
    readonly remoteTraceback = "",
  ) {
    super(`${op}: ${message}`);
  }
}
