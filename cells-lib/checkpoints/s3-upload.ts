/** Uploads one local file as one S3 object, hashing it on the way: a single PutObject up to the
 * part size, a multipart upload above it. @aws-sdk/lib-storage is not installed, and this is the
 * small part of it checkpoints need. Parts go up one at a time, so memory stays at one part. */
import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { FileDigest } from "./record.ts";

/** S3 allows at most 10,000 parts; larger files get larger parts. */
const MAX_PARTS = 10_000;

export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
}

export async function uploadFile(target: UploadTarget, file: string, partSize: number): Promise<Omit<FileDigest, "path">> {
  const fh = await open(file, "r");
  try {
    const size = (await fh.stat()).size;
    const hash = createHash("sha256");
    if (size <= partSize) {
      const body = await readPart(fh, 0, size, file);
      hash.update(body);
      await target.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: target.key, Body: body, ContentLength: size }));
    } else {
      await uploadParts(target, fh, size, Math.max(partSize, Math.ceil(size / MAX_PARTS)), hash, file);
    }
    return { size, sha256: hash.digest("hex") };
  } finally {
    await fh.close();
  }
}

async function uploadParts(target: UploadTarget, fh: FileHandle, size: number, partSize: number, hash: ReturnType<typeof createHash>, file: string): Promise<void> {
  const { client, bucket: Bucket, key: Key } = target;
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  try {
    const parts: CompletedPart[] = [];
    for (let offset = 0; offset < size; offset += partSize) {
      const body = await readPart(fh, offset, Math.min(partSize, size - offset), file);
      hash.update(body);
      const PartNumber = parts.length + 1;
      const { ETag } = await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: body, ContentLength: body.byteLength }));
      parts.push({ PartNumber, ETag });
    }
    await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
  } catch (err) {
    // Best effort: after a crash, parts stay until the bucket's AbortIncompleteMultipartUpload
    // lifecycle rule removes them.
    await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => {});
    throw err;
  }
}

async function readPart(fh: FileHandle, position: number, length: number, file: string): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  for (let filled = 0; filled < length; ) {
    const { bytesRead } = await fh.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new Error(`${file} shrank while it was being uploaded`);
    filled += bytesRead;
  }
  return buffer;
}
