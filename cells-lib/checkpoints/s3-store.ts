/** Checkpoints in an S3 bucket (or an S3-compatible server) under a prefix.
 *
 * A put uploads every file to `<prefix>/<name>/files/<path>`, then writes
 * `<prefix>/<name>/COMMIT.json` (metadata plus each file's size and sha256) last; a single
 * PutObject is atomic, so that write is the commit, and list() shows only names that have one.
 * Before uploading, a put removes what interrupted puts left behind (objects under `files/` with
 * no COMMIT.json) and, when replacing a name, that name's old objects, COMMIT.json first (one
 * writer per prefix). Credentials come from the SDK's default chain (environment variables,
 * `AWS_PROFILE` or the `profile` option, SSO, instance roles) unless given; the store keeps them
 * in a closure, not in any property a notebook could print, and blanks them out of error
 * messages. */
import path from "node:path";
import process from "node:process";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { intoFreshDir, listFiles, writeHashed } from "./files.ts";
import {
  type CommitRecord,
  entryOf,
  type FileDigest,
  makeRecord,
  parseRecord,
  serializeRecord,
  sortEntries,
  toJsonObject,
} from "./record.ts";
import { describeError, redact } from "./redact.ts";
import { uploadFile } from "./s3-upload.ts";
import { CheckpointError, type CheckpointStore, checkName } from "./store.ts";

const COMMIT = "COMMIT.json";
const MiB = 1024 * 1024;

// Not strict: the SDK tags credential objects it has used with extra fields. Parsing copies the
// object, so the caller's own is never the one the SDK tags.
const StaticCredentials = z.object({
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  sessionToken: z.string().min(1).optional(),
});
type CredentialProvider = () => Promise<z.infer<typeof StaticCredentials>>;

const S3StoreOptions = z
  .object({
    bucket: z.string().min(1),
    /** Folder inside the bucket; "" is the bucket's top level. */
    prefix: z.string(),
    /** An S3-compatible server (MinIO, R2, s3rver...). */
    endpoint: z
      .url({ protocol: /^https?$/, error: "expected an http(s) URL" })
      .refine(
        (u) => !URL.canParse(u) || (!new URL(u).username && !new URL(u).password),
        "the endpoint must not contain credentials; use the environment or an AWS profile",
      )
      .optional(),
    region: z.string().min(1).optional(),
    /** `https://host/bucket/key` instead of `https://bucket.host/key`; most S3-compatible servers need it. */
    forcePathStyle: z.boolean().optional(),
    /** A profile in ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE, else "default"). */
    profile: z.string().min(1).optional(),
    /** Explicit credentials (or a provider function) instead of the default chain. */
    credentials: z
      .union([StaticCredentials, z.custom<CredentialProvider>((v) => typeof v === "function")], {
        error: "expected { accessKeyId, secretAccessKey, sessionToken? } or a credentials provider function",
      })
      .optional(),
    /** Files above this go up as a multipart upload in parts of this size, four at a time (so up
     * to four parts are held in memory). */
    partSizeMiB: z.number().int().min(5).max(5120).default(64),
  })
  .strict();
export type S3StoreOptions = z.input<typeof S3StoreOptions>;

export function s3Store(options: S3StoreOptions): CheckpointStore {
  const o = parseOptions(S3StoreOptions, options, "s3Store");
  const client = new S3Client(clientConfig(o));
  const bucket = o.bucket;
  const base = o.prefix.replace(/^\/+|\/+$/g, "");
  const top = base ? `${base}/` : "";
  const label = describeStore(o, base);

  const dirKey = (name: string) => `${top}${name}/`;
  const commitKey = (name: string) => `${dirKey(name)}${COMMIT}`;
  const fileKey = (name: string, rel: string) => `${dirKey(name)}files/${rel}`;

  /** Every credential string that could appear in an error, for redaction. */
  async function secrets(err: unknown): Promise<(string | undefined)[]> {
    const known = [process.env.AWS_ACCESS_KEY_ID, process.env.AWS_SECRET_ACCESS_KEY, process.env.AWS_SESSION_TOKEN];
    if (o.credentials && typeof o.credentials === "object")
      known.push(o.credentials.accessKeyId, o.credentials.secretAccessKey, o.credentials.sessionToken);
    // Resolved credentials are memoised after a successful request; after a failed resolution,
    // asking again would only repeat the slow failure.
    if ((err as Error | undefined)?.name !== "CredentialsProviderError") {
      const resolved = await client.config.credentials().catch(() => undefined);
      known.push(resolved?.accessKeyId, resolved?.secretAccessKey, resolved?.sessionToken);
    }
    return known;
  }

  /** Runs one store operation; any error leaves as a CheckpointError with credentials blanked. */
  async function guarded<T>(where: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof CheckpointError) throw err; // the store's own messages quote no credentials
      throw new CheckpointError(redact(`${where}: ${describeError(err)}`, await secrets(err)));
    }
  }

  async function listKeys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  /** Keys grouped by checkpoint name: `<top><name>/<rest>`. */
  function byName(keys: string[]): Map<string, string[]> {
    const groups = new Map<string, string[]>();
    for (const key of keys) {
      const slash = key.indexOf("/", top.length);
      if (slash < 0) continue;
      const name = key.slice(top.length, slash);
      const group = groups.get(name) ?? [];
      group.push(key);
      groups.set(name, group);
    }
    return groups;
  }

  /** COMMIT.json goes first, so a checkpoint stops being listed before its files go. */
  async function deleteKeys(name: string, keys: string[]): Promise<void> {
    const commit = commitKey(name);
    if (keys.includes(commit)) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: commit }));
    for (const key of keys)
      if (key !== commit) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  async function removeStrays(name: string): Promise<void> {
    for (const [other, keys] of byName(await listKeys(top))) {
      if (other === name) await deleteKeys(name, keys);
      else if (!keys.includes(commitKey(other)))
        await deleteKeys(
          other,
          keys.filter((k) => k.startsWith(`${dirKey(other)}files/`)),
        );
    }
  }

  /** The commit record, or undefined when the name has none (never committed, or deleted). */
  async function readCommit(name: string): Promise<CommitRecord | undefined> {
    try {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: commitKey(name) }));
      return parseRecord((await r.Body?.transformToString("utf-8")) ?? "", `s3://${bucket}/${commitKey(name)}`);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  return {
    describe: () => label,

    put: (name, localDir, meta = {}) => {
      const where = `put "${name}" into ${label}`;
      return guarded(where, async () => {
        checkName(name, where);
        const json = toJsonObject(meta, where);
        const files = await listFiles(localDir, where);
        await removeStrays(name);
        const digests: FileDigest[] = [];
        for (const rel of files) {
          const target = { client, bucket, key: fileKey(name, rel) };
          digests.push({ path: rel, ...(await uploadFile(target, path.join(localDir, rel), o.partSizeMiB * MiB)) });
        }
        const record = makeRecord(json, digests);
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: commitKey(name),
            Body: serializeRecord(record),
            ContentType: "application/json",
          }),
        );
        return entryOf(name, record);
      });
    },

    get: (name, localDir) => {
      const where = `get "${name}" from ${label}`;
      return guarded(where, async () => {
        checkName(name, where);
        const record = await readCommit(name);
        if (!record) throw new CheckpointError(`${where}: no such checkpoint`);
        await intoFreshDir(localDir, where, async (dir) => {
          for (const f of record.files) {
            const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: fileKey(name, f.path) }));
            await writeHashed(bodyChunks(r.Body, f.path), path.join(dir, f.path), f);
          }
        });
        return entryOf(name, record);
      });
    },

    list: () =>
      guarded(`list ${label}`, async () => {
        const names = [...byName(await listKeys(top))]
          .filter(([name, keys]) => keys.includes(commitKey(name)))
          .map(([name]) => name);
        const records = await Promise.all(names.map(async (name) => [name, await readCommit(name)] as const));
        return sortEntries(records.flatMap(([name, record]) => (record ? [entryOf(name, record)] : [])));
      }),

    delete: (name) => {
      const where = `delete "${name}" from ${label}`;
      return guarded(where, async () => {
        checkName(name, where);
        await deleteKeys(name, await listKeys(dirKey(name)));
      });
    },
  };
}

function clientConfig(o: z.output<typeof S3StoreOptions>): S3ClientConfig {
  return {
    region: o.region,
    endpoint: o.endpoint,
    forcePathStyle: o.forcePathStyle,
    profile: o.profile,
    credentials: o.credentials,
    // S3-compatible servers treat the SDK's default extra CRC32s unevenly.
    // Uploads stay protected by SigV4's signed payload sha256 and downloads by COMMIT.json's
    // sha256s, so every server sees the same plain requests the tests exercise.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  };
}

function describeStore(o: z.output<typeof S3StoreOptions>, base: string): string {
  const where = [`s3://${o.bucket}/${base}`];
  if (o.endpoint) where.push(`at ${new URL(o.endpoint).origin}`);
  if (o.region) where.push(`in ${o.region}`);
  where.push(
    o.credentials ? "(given credentials)" : o.profile ? `(profile ${o.profile})` : "(default credential chain)",
  );
  return where.join(" ");
}

/** A missing object, as opposed to a missing bucket (also a 404). */
function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "NoSuchKey" || (e.$metadata?.httpStatusCode === 404 && e.name !== "NoSuchBucket");
}

function bodyChunks(body: unknown, file: string): AsyncIterable<Uint8Array> {
  if (body && typeof body === "object" && Symbol.asyncIterator in body) return body as AsyncIterable<Uint8Array>;
  throw new CheckpointError(`${file}: the S3 response had no readable body`);
}
