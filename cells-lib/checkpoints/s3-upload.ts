/** Uploads one local file as one S3 object with @aws-sdk/lib-storage's Upload (a single PutObject
 * up to the part size, a multipart upload above it, aborted if a part fails), hashing the bytes as
 * they stream out so COMMIT.json records exactly what went up. */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { FileDigest } from "./record.ts";

/** S3 allows at most 10,000 parts; Upload fails past that rather than grow its parts. */
const MAX_PARTS = 10_000;
/** Parts in flight at once (lib-storage's default); memory holds up to this many parts. */
const PARTS_IN_FLIGHT = 4;

export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
}

export async function uploadFile(
  target: UploadTarget,
  file: string,
  partSize: number,
): Promise<Omit<FileDigest, "path">> {
  const size = (await stat(file)).size;
  const hash = createHash("sha256");
  const body = Readable.from(hashedChunks(file, size, hash));
  try {
    await new Upload({
      client: target.client,
      // ContentLength: a stream has no length of its own, and Upload checks the part count against it.
      params: { Bucket: target.bucket, Key: target.key, Body: body, ContentLength: size },
      partSize: Math.max(partSize, Math.ceil(size / MAX_PARTS)),
      queueSize: PARTS_IN_FLIGHT,
    }).done();
  } finally {
    body.destroy(); // after a failure Upload stops reading; this closes the file
  }
  return { size, sha256: hash.digest("hex") };
}

async function* hashedChunks(file: string, size: number, hash: Hash): AsyncGenerator<Buffer> {
  let read = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    read += chunk.byteLength;
    yield chunk;
  }
  // Thrown before Upload sends the last part, so a changed file never gets committed.
  if (read !== size) throw new Error(`${file} changed size while it was being uploaded`);
}
