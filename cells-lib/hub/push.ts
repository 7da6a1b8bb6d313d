/** `pushToHub(dir, repoId)`: uploads a folder (a trained model, a dataset) to the Hugging Face Hub
 * as one commit, creating the repo if needed. */
import { pathToFileURL } from "node:url";
import {
  type CommitProgressEvent,
  createBranch,
  createRepo,
  HubApiError,
  repoExists,
  uploadFilesWithProgress,
} from "@huggingface/hub";
import { z } from "zod";
import { parseOptions } from "../util/options.ts";
import { type Credential, HubError, hubFailure } from "./errors.ts";
import { type LocalFile, listFolder } from "./files.ts";
import { type ProgressSink, type PushProgress, progressBar, progressTracker } from "./progress.ts";
import { type HubRepo, parseRepoId, repoUrl } from "./repo-id.ts";
import { resolveCredential, resolveEndpoint } from "./settings.ts";

const PushOptions = z
  .object({
    /** Default: HF_TOKEN, then HUGGING_FACE_HUB_TOKEN. */
    token: z.string().min(1, "expected a Hugging Face token").optional(),
    /** Visibility of a repo this push creates (an existing repo keeps its own); default: the
     * namespace's default, usually public. */
    private: z.boolean().optional(),
    /** The branch to commit to, created from the default branch if missing. */
    revision: z.string().min(1).default("main"),
    /** Default: HF_ENDPOINT, then https://huggingface.co. */
    endpoint: z.string().optional(),
    commitMessage: z.string().min(1).optional(),
    onProgress: z
      .custom<(p: PushProgress) => void>((v) => typeof v === "function", "onProgress must be a function")
      .optional(),
    /** Progress bar (in a notebook, or on stderr in a terminal). */
    display: z.boolean().default(true),
  })
  .strict();
export type PushOptions = z.input<typeof PushOptions>;

export interface PushResult {
  repoUrl: string;
  commitUrl: string;
  commitOid: string;
  /** false: the repo existed already. */
  created: boolean;
  files: number;
  bytes: number;
}

/** Where a push goes. */
interface Target {
  repo: HubRepo;
  hubUrl: string;
  credential: Credential;
  branch: string;
}

export async function pushToHub(dir: string, repoId: string, options: PushOptions = {}): Promise<PushResult> {
  const o = parseOptions(PushOptions, options, "pushToHub");
  const target: Target = {
    repo: parseRepoId(repoId),
    credential: resolveCredential(o.token),
    hubUrl: resolveEndpoint(o.endpoint),
    branch: o.revision,
  };
  const files = await listFolder(dir);
  const bar = o.display ? progressBar(`push ${target.repo.designation}`, files.length) : undefined;
  const tracker = progressTracker(
    files,
    [o.onProgress, bar?.sink].filter((s): s is ProgressSink => s !== undefined),
  );
  try {
    tracker.creating();
    const created = await ensureRepo(target, o.private);
    if (target.branch !== "main") await ensureBranch(target);
    const commit = await commitFolder(target, files, o.commitMessage, tracker.event);
    tracker.done();
    return {
      repoUrl: repoUrl(target.hubUrl, target.repo),
      commitUrl: commit.url,
      commitOid: commit.oid,
      created,
      files: files.length,
      bytes: files.reduce((sum, f) => sum + f.size, 0),
    };
  } finally {
    bar?.close();
  }
}

/** true: created; false: it existed already. */
async function ensureRepo({ repo, hubUrl, credential }: Target, isPrivate: boolean | undefined): Promise<boolean> {
  try {
    await createRepo({
      repo: repo.designation,
      accessToken: credential.token,
      hubUrl,
      ...(isPrivate !== undefined && { visibility: isPrivate ? "private" : "public" }),
    });
    return true;
  } catch (err) {
    if (err instanceof HubApiError) {
      // Pushing again to the same repo is the common case, not an error.
      if (err.statusCode === 409) return false;
      // A fine-grained token may write to a repo but not create any in its namespace.
      if (
        err.statusCode === 403 &&
        (await repoExists({ repo: repo.designation, accessToken: credential.token, hubUrl }).catch(() => false))
      )
        return false;
    }
    throw hubFailure(`creating repo ${repo.designation}`, err, credential);
  }
}

/** Commits to a missing branch fail, so the branch is created first (409: it exists). */
async function ensureBranch({ repo, hubUrl, credential, branch }: Target): Promise<void> {
  try {
    await createBranch({ repo: repo.designation, branch, accessToken: credential.token, hubUrl });
  } catch (err) {
    if (err instanceof HubApiError && err.statusCode === 409) return;
    throw hubFailure(`creating branch ${branch} of ${repo.designation}`, err, credential);
  }
}

/** One commit with every file: large and binary files go to LFS storage first (the Hub decides
 * which), the rest inside the commit. */
async function commitFolder(
  { repo, hubUrl, credential, branch }: Target,
  files: readonly LocalFile[],
  message: string | undefined,
  onEvent: (e: CommitProgressEvent) => void,
): Promise<{ oid: string; url: string }> {
  try {
    const events = uploadFilesWithProgress({
      repo: repo.designation,
      accessToken: credential.token,
      hubUrl,
      branch,
      commitTitle: message ?? `Upload ${files.length} file${files.length === 1 ? "" : "s"} with thinkcells`,
      // File URLs are read lazily, in slices: multi-GB weights never sit in memory whole.
      files: files.map((f) => ({ path: f.path, content: pathToFileURL(f.absolute) })),
    });
    for (;;) {
      const step = await events.next();
      if (!step.done) {
        onEvent(step.value);
        continue;
      }
      // Only bucket commits (never pushed here) end without one.
      if (!step.value)
        throw new HubError(`pushToHub: the Hub answered the commit to ${repo.designation} without a commit id`);
      return step.value.commit;
    }
  } catch (err) {
    throw hubFailure(`uploading to ${repo.designation}`, err, credential);
  }
}
