/** A real S3-compatible server (s3rver) on loopback for tests, on a random port with its data in
 * a temp dir, plus a fault hook that drops chosen requests' connections mid-flight. */
import { rm } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tempDir } from "./helpers.ts";

/** The part of s3rver's API used here (it ships no types). */
interface S3rver {
  configureBuckets(): Promise<void>;
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
}
const S3rver = createRequire(import.meta.url)("s3rver") as new (options: object) => S3rver;

/** s3rver's built-in account: it checks the key id, not SigV4 signatures. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  /** Requests for which this returns true have their connection destroyed before any reply. */
  failWhen: ((req: http.IncomingMessage) => boolean) | undefined;
  /** Every request seen, as "METHOD /path?query". */
  requests: string[];
  stop(): Promise<void>;
}

export async function startS3Server(bucket = "checkpoints"): Promise<TestS3Server> {
  const directory = tempDir("s3rver");
  const s3rver = new S3rver({ silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
  await s3rver.configureBuckets();
  const handle = s3rver.callback();
  const httpServer = http.createServer((req, res) => {
    server.requests.push(`${req.method} ${req.url}`);
    if (server.failWhen?.(req)) req.socket.destroy();
    else handle(req, res);
  });
  await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  const server: TestS3Server = {
    endpoint: `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`,
    bucket,
    failWhen: undefined,
    requests: [],
    async stop() {
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      await rm(directory, { recursive: true, force: true });
    },
  };
  return server;
}
