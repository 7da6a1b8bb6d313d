/** Errors from the bridge, typed so a notebook can tell a bad input from a crash. */

export type BridgeErrorKind =
  | "bad_input" // the bridge understood the request but could not carry it out
  | "invalid_request" // the request did not match the protocol schema
  | "internal" // an unexpected Python exception
  | "cancelled" // the caller cancelled the request
  | "crashed" // the bridge process died or the connection dropped
  | "start_failed" // the bridge could not be started
  | "not_running" // connect({ start: false }) found no bridge running
  | "handshake"; // wrong token or protocol version

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
