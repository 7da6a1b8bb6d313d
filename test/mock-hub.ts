/** A stand-in for the Hugging Face Hub on loopback: the HTTP calls @huggingface/hub makes to create
 * a repo (or see that it exists), create a branch and commit files (with large files through basic Git LFS), checked
 * against one bearer token, with every committed file kept in memory for assertions. */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/** Like the Hub: files from this size, and binary files (a NUL byte in their first 512 bytes), go
 * through LFS storage; the rest travel base64-encoded inside the commit. */
export const LFS_THRESHOLD = 10 * 1024 * 1024;

export interface StoredFile {
  content: Buffer;
  lfs: boolean;
}

export interface MockBranch {
  files: Map<string, StoredFile>;
  /** Newest last. */
  commits: { oid: string; title: string }[];
}

export interface MockRepo {
  visibility: string | undefined;
  branches: Map<string, MockBranch>;
}

/** An answer that replaces the normal one, for fault injection. */
export interface MockResponse {
  status: number;
  body: object;
}

export interface MockHub {
  url: string;
  /** "models/ns/name" or "datasets/ns/name" → repo. */
  repos: Map<string, MockRepo>;
  /** sha256 → content of uploaded LFS objects. */
  lfsObjects: Map<string, Buffer>;
  /** Every request seen, as "METHOD /path". */
  requests: string[];
  /** When it returns a response, that is sent instead of handling the request. */
  intercept: ((req: http.IncomingMessage) => MockResponse | undefined) | undefined;
  /** The files of a branch as path → content. */
  files(repoKey: string, branch?: string): Map<string, Buffer>;
  stop(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const REPO = "(models|datasets)/([\\w.-]+/[\\w.-]+)";
const ROUTES: [method: string, pattern: RegExp, handler: keyof Handlers][] = [
  ["POST", /^\/api\/repos\/create$/, "createRepo"],
  ["GET", new RegExp(`^/api/${REPO}$`), "repoInfo"],
  ["POST", new RegExp(`^/api/${REPO}/preupload/([^/]+)$`), "preupload"],
  ["POST", new RegExp(`^/api/${REPO}/branch/([^/]+)$`), "createBranch"],
  ["POST", new RegExp(`^/api/${REPO}/commit/([^/]+)$`), "commit"],
  // Model repos' git URLs have no "models/" prefix.
  ["POST", /^\/(?:(datasets)\/)?([\w.-]+\/[\w.-]+)\.git\/info\/lfs\/objects\/batch$/, "lfsBatch"],
  // Plays the storage bucket's presigned URL: no bearer token.
  ["PUT", /^\/lfs-upload\/([0-9a-f]{64})$/, "lfsUpload"],
];

type Handler = (match: string[], body: Buffer) => object;
type Handlers = Record<
  "createRepo" | "repoInfo" | "preupload" | "createBranch" | "commit" | "lfsBatch" | "lfsUpload",
  Handler
>;

export async function startMockHub(token: string): Promise<MockHub> {
  const repos = new Map<string, MockRepo>();
  const lfsObjects = new Map<string, Buffer>();

  const repoOf = (type: string | undefined, name: string): [string, MockRepo] => {
    const key = `${type ?? "models"}/${name}`;
    const repo = repos.get(key);
    if (!repo) throw new HttpError(404, "Repository not found");
    return [key, repo];
  };
  const branchOf = (repo: MockRepo, rev: string): MockBranch => {
    const branch = repo.branches.get(decodeURIComponent(rev));
    if (!branch) throw new HttpError(404, `Invalid rev id: ${decodeURIComponent(rev)}`);
    return branch;
  };
  const json = (body: Buffer) => JSON.parse(body.toString("utf8"));

  const handlers: Handlers = {
    createRepo(_, body) {
      const { name, organization, type, visibility } = json(body);
      const key = `${type}s/${organization}/${name}`;
      if (repos.has(key)) throw new HttpError(409, `You already created this ${type} repo`);
      const url = `${hub.url}/${type === "model" ? "" : `${type}s/`}${organization}/${name}`;
      repos.set(key, {
        visibility,
        branches: new Map([["main", { files: new Map(), commits: [{ oid: oid(), title: "initial commit" }] }]]),
      });
      return { url, name: `${organization}/${name}`, id: randomBytes(12).toString("hex") };
    },
    repoInfo([, type, name]) {
      const [, repo] = repoOf(type, name!);
      return { id: name, private: repo.visibility === "private" };
    },
    preupload([, type, name, rev], body) {
      branchOf(repoOf(type, name!)[1], rev!);
      const files = json(body).files as { path: string; size: number; sample: string }[];
      return {
        files: files.map((f) => ({
          path: f.path,
          uploadMode: f.size >= LFS_THRESHOLD || Buffer.from(f.sample, "base64").includes(0) ? "lfs" : "regular",
          shouldIgnore: false,
        })),
      };
    },
    createBranch([, type, name, branch], body) {
      const [, repo] = repoOf(type, name!);
      const branchName = decodeURIComponent(branch!);
      if (repo.branches.has(branchName)) throw new HttpError(409, "Reference already exists");
      const from = branchOf(repo, json(body).startingPoint ?? "main");
      repo.branches.set(branchName, { files: new Map(from.files), commits: [...from.commits] });
      return {};
    },
    lfsBatch([, type, name], body) {
      repoOf(type, name!);
      const request = json(body) as { operation: string; objects: { oid: string; size: number }[] };
      if (request.operation !== "upload") throw new HttpError(400, "mock hub: only LFS uploads");
      return {
        transfer: "basic",
        objects: request.objects.map(({ oid, size }) => ({
          oid,
          size,
          authenticated: true,
          // No actions: the object is stored already, and the client skips it.
          ...(!lfsObjects.has(oid) && {
            actions: { upload: { href: `${hub.url}/lfs-upload/${oid}`, expires_in: 3600 } },
          }),
        })),
      };
    },
    lfsUpload([, expected], body) {
      if (createHash("sha256").update(body).digest("hex") !== expected)
        throw new HttpError(400, "content does not match its sha256");
      lfsObjects.set(expected!, body);
      return {};
    },
    commit([, type, name, rev], body) {
      const [key, repo] = repoOf(type, name!);
      const branch = branchOf(repo, rev!);
      const [header, ...operations] = body
        .toString("utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line));
      if (header?.key !== "header") throw new HttpError(400, "the first line must be the header");
      // Applied only once every operation is valid: a commit is all or nothing.
      const changes = new Map<string, StoredFile>();
      for (const { key: kind, value } of operations) {
        if (kind === "file" && value.encoding === "base64") {
          changes.set(value.path, { content: Buffer.from(value.content, "base64"), lfs: false });
        } else if (kind === "lfsFile") {
          const content = lfsObjects.get(value.oid);
          if (!content || content.length !== value.size)
            throw new HttpError(400, `LFS object ${value.oid} of ${value.path} was not uploaded`);
          changes.set(value.path, { content, lfs: true });
        } else {
          throw new HttpError(400, `mock hub: unsupported commit operation ${kind}`);
        }
      }
      for (const [path, file] of changes) branch.files.set(path, file);
      const commitOid = oid();
      branch.commits.push({ oid: commitOid, title: header.value.summary });
      return {
        success: true,
        commitOid,
        commitUrl: `${hub.url}/${key.replace(/^models\//, "")}/commit/${commitOid}`,
        hookOutput: "",
      };
    },
  };

  const server = http.createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    hub.requests.push(`${req.method} ${path}`);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const send = (status: number, body: object, contentType = "application/json") => {
      res.writeHead(status, { "Content-Type": contentType }).end(JSON.stringify(body));
    };
    const injected = hub.intercept?.(req);
    if (injected) return send(injected.status, injected.body);
    const route = ROUTES.find(([method, pattern]) => method === req.method && pattern.test(path));
    if (!route) return send(404, { error: `mock hub: no route for ${req.method} ${path}` });
    const [, pattern, name] = route;
    if (name !== "lfsUpload" && req.headers.authorization !== `Bearer ${token}`) {
      return send(401, { error: "Invalid credentials in Authorization header" });
    }
    try {
      send(
        200,
        handlers[name](pattern.exec(path)!, Buffer.concat(chunks)),
        name === "lfsBatch" ? "application/vnd.git-lfs+json" : "application/json",
      );
    } catch (err) {
      // A malformed request is the client's bug: answer it, as the Hub would, instead of crashing.
      send(err instanceof HttpError ? err.status : 400, { error: err instanceof Error ? err.message : String(err) });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));

  const hub: MockHub = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    repos,
    lfsObjects,
    requests: [],
    intercept: undefined,
    files(repoKey, branch = "main") {
      const files = repos.get(repoKey)?.branches.get(branch)?.files;
      if (!files) throw new Error(`mock hub: no branch ${branch} in ${repoKey}`);
      return new Map([...files].map(([path, file]) => [path, file.content]));
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return hub;
}

function oid(): string {
  return randomBytes(20).toString("hex");
}
