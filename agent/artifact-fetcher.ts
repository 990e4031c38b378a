import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, rm, stat, statfs, truncate } from 'node:fs/promises';
import { MAX_MANIFEST_BYTES, ONNX_FILE, artifactId, type Manifest } from '../shared/artifact/manifest.ts';
import { parseManifestBytes } from '../shared/artifact/read-artifact.ts';
import type { Assignment } from '../shared/protocol/payloads.ts';
import { verifyManifestForDevice } from '../shared/protocol/signer-endorsement.ts';
import { errorMessage } from '../shared/util/errors.ts';
import type { DataDir } from './data-dir.ts';
import { describeFileError } from './file-errors.ts';
import { manifestIdentityProblem } from './manifest-identity.ts';

/** A fetch failure. `permanent` ones (verification, 4xx, redirects) are refused; the others are retried. */
export class FetchError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    /** The server's Retry-After (503, 429), in milliseconds, when it sent one. */
    readonly retryAfterMs?: number,
    /** The HTTP status of a refused response. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'FetchError';
  }
}

/** Bounds on one HTTP request; a request that breaks one is aborted and retried. */
export interface DownloadLimits {
  /** No byte (or no response headers) for this long aborts the request. */
  idleTimeoutMs: number;
  /**
   * Every `rateWindowMs` of a request must bring at least `minBytesPerSecond` on average over
   * that window, so a server trickling bytes just often enough to beat the idle timeout cannot
   * hold the agent (and every later assignment) for long — not even after a fast start.
   */
  minBytesPerSecond: number;
  rateWindowMs: number;
}

/**
 * The device's own storage failed while a download was written or read back (a full disk, a
 * quota, a read-only or failing card): permanent, since retrying as for a network error only
 * fills the disk again. The partial file is removed.
 */
export class DiskError extends FetchError {
  constructor(message: string) {
    super(message, true);
    this.name = 'DiskError';
  }
}

/** Bytes kept free besides the model's, for the state file and the reports written after the download. */
export const DOWNLOAD_SPACE_RESERVE = 64 * 1024;

/** Free bytes for an unprivileged process on the file system holding `dir`. */
export type FreeSpace = (dir: string) => Promise<number>;

export const freeSpaceOf: FreeSpace = async (dir) => {
  const info = await statfs(dir);
  return info.bavail * info.bsize;
};

export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = { idleTimeoutMs: 30_000, minBytesPerSecond: 1024, rateWindowMs: 60_000 };

export interface ServerAccess {
  /** Base URL of the fleet server; assignment URLs must be on its origin. */
  url: string;
  token: string;
  /** The server's ed25519 key pinned at enrollment. */
  publicKey: KeyObject;
}

/**
 * A manifest as fetched for an assignment: parsed and verified, with the exact bytes it was read
 * from. The store keeps those bytes as manifest.json, so the stored file is never larger than the
 * MAX_MANIFEST_BYTES checked at the download (a re-serialisation, pretty-printed, can be).
 */
export interface VerifiedManifest {
  manifest: Manifest;
  bytes: Buffer;
}

export interface FetchedModel {
  manifest: Manifest;
  /** The downloaded, size- and sha256-verified model.onnx (still a .part file in the downloads dir). */
  onnxPath: string;
}

/**
 * Fetches what an assignment names: the signed manifest (checked against the assignment's
 * artifact id and the pinned key, or the signer key the server vouched for in the assignment)
 * and then model.onnx by its sha256, resuming a partial download with `Range: bytes=N-` /
 * If-Range. Nothing it returns is unverified.
 */
export class ArtifactFetcher {
  constructor(
    readonly server: ServerAccess,
    readonly dataDir: DataDir,
    readonly onBytes: (bytes: number) => void = () => {},
    /** Aborts every request in flight (the agent is stopping). */
    readonly signal?: AbortSignal,
    readonly limits: DownloadLimits = DEFAULT_DOWNLOAD_LIMITS,
    readonly freeSpace: FreeSpace = freeSpaceOf,
  ) {}

  /** `signal` aborts this fetch only (the assignment was superseded). */
  async fetchVerifiedManifest(assignment: Assignment, signal?: AbortSignal): Promise<VerifiedManifest> {
    const url = this.#checkedUrl(assignment.url);
    const request = await this.#get(url, {}, signal);
    let bytes: Buffer;
    try {
      bytes = await readLimited(request, MAX_MANIFEST_BYTES);
    } finally {
      await request.done();
    }
    const parsed = parseManifestBytes(bytes);
    if ('problem' in parsed) throw new FetchError(`manifest: ${parsed.problem}`, true);
    const { manifest } = parsed;
    const id = artifactId(manifest);
    if (id !== assignment.sha256) throw new FetchError(`manifest: artifact id is ${id}, but the assignment names ${assignment.sha256}`, true);
    const signatureFailure = verifyManifestForDevice(manifest, id, this.server.publicKey, assignment.signer);
    if (signatureFailure) throw new FetchError(`manifest ${signatureFailure}`, true);
    const mismatch = manifestIdentityProblem(manifest, assignment, 'the assignment');
    if (mismatch) throw new FetchError(mismatch, true);
    return { manifest, bytes };
  }

  /**
   * Downloads (or resumes) model.onnx of a verified manifest and checks its size and sha256; first
   * checks that the disk has room for what is left of it (refused at once if not).
   */
  async downloadModel({ manifest, bytes }: VerifiedManifest, signal?: AbortSignal): Promise<FetchedModel> {
    const expected = manifest.files[ONNX_FILE]!;
    await onDisk(this.dataDir.downloadsDir, () => mkdir(this.dataDir.downloadsDir, { recursive: true }));
    const part = this.dataDir.partFile(expected.sha256);
    // A directory or a FIFO where the partial download goes (not the agent's) is removed: it would
    // refuse the model as a disk failure, or hold the download for good. (A symbolic link is
    // written through, as to any file: the tests point one at /dev/full to fill the disk.)
    const existing = await lstat(part).catch(() => undefined);
    if (existing && !existing.isFile() && !existing.isSymbolicLink()) await onDisk(part, () => rm(part, { recursive: true, force: true }));
    try {
      await this.#checkSpace(manifest, bytes.length, part);
      return await this.#download(manifest, part, signal);
    } catch (error) {
      // A refused download is not resumed from: do not leave its bytes in downloads/ (on a full
      // disk they are what keeps it full). Removing can fail too (a read-only card): the refusal
      // says why the download failed, not that.
      if (error instanceof FetchError && error.permanent) await rm(part, { force: true }).catch(() => {});
      throw error;
    }
  }

  /** Refuses a download the disk has no room for: what is left of model.onnx, its manifest (`manifestBytes`, as stored), and a reserve for the state file and reports. */
  async #checkSpace(manifest: Manifest, manifestBytes: number, part: string): Promise<void> {
    const expected = manifest.files[ONNX_FILE]!;
    const have = (await stat(part).catch(() => undefined))?.size ?? 0;
    const needed = expected.bytes - (have <= expected.bytes ? have : 0) + manifestBytes + DOWNLOAD_SPACE_RESERVE;
    // A file system that cannot say (statfs unsupported) is not a reason to refuse: the writes will tell.
    const free = await this.freeSpace(this.dataDir.downloadsDir).catch(() => undefined);
    if (free !== undefined && needed > free) throw new DiskError(`no space for ${ONNX_FILE}: needs ${needed} bytes, ${free} free`);
  }

  async #download(manifest: Manifest, part: string, signal: AbortSignal | undefined): Promise<FetchedModel> {
    const expected = manifest.files[ONNX_FILE]!;
    let have = (await stat(part).catch(() => undefined))?.size ?? 0;
    if (have > expected.bytes) {
      await onDisk(part, () => truncate(part, 0));
      have = 0;
    }
    /**
     * Where this request continued a partial file (0: the body is the whole file). A complete file
     * left by an earlier run (no request) counts as resumed at its end: its bytes are the old ones.
     */
    let resumedAt = have === expected.bytes ? have : 0;
    if (have < expected.bytes) {
      const url = new URL(`api/blobs/${expected.sha256}`, withSlash(this.server.url)).toString();
      const headers: Record<string, string> = have > 0 ? { Range: `bytes=${have}-`, 'If-Range': `"${expected.sha256}"` } : {};
      let request: OpenRequest;
      try {
        request = await this.#get(url, headers, signal);
      } catch (error) {
        // 416: the server has no such range (its blob changed, or the partial file is not a
        // prefix of it). Resuming again would fail the same way forever: start from zero.
        if (have > 0 && error instanceof FetchError && error.status === 416) {
          await onDisk(part, () => truncate(part, 0));
          throw new FetchError(`${error.message} for a download resumed at ${have} bytes; starting over`, false);
        }
        throw error;
      }
      try {
        const { response } = request;
        let offset = have;
        if (response.status === 200) offset = 0;
        else if (response.status === 206) {
          const contentRange = response.headers.get('content-range');
          const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '');
          if (!range || Number(range[1]) !== have || Number(range[2]) !== expected.bytes - 1 || (range[3] !== '*' && Number(range[3]) !== expected.bytes)) {
            // Not the range asked for: the partial file cannot be continued from this answer
            // (from zero, there may be no file yet: nothing to truncate).
            if (have > 0) await onDisk(part, () => truncate(part, 0));
            throw new FetchError(`model download: asked for bytes ${have}-, got Content-Range ${JSON.stringify(contentRange)}; starting over`, false);
          }
        }
        resumedAt = offset;
        await this.#writeBody(request, part, offset, expected.bytes);
      } finally {
        await request.done();
      }
    }
    const size = (await onDisk(part, () => stat(part))).size;
    if (size !== expected.bytes) {
      // Short from byte 0, the server's file is not the manifest's: refused. Short after a resume,
      // the old partial bytes may be what is wrong (docs/protocol.md): one more attempt from zero.
      await onDisk(part, () => truncate(part, 0));
      const message = `${ONNX_FILE}: size mismatch (expected ${expected.bytes} bytes, got ${size})`;
      throw new FetchError(resumedAt > 0 ? `${message} after resuming at ${resumedAt} bytes` : message, resumedAt === 0);
    }
    const actual = await onDisk(part, () => sha256OfFile(part));
    if (actual !== expected.sha256) {
      // A complete file with the wrong content must not be resumed from. If it was resumed, the
      // bad bytes may be the old partial ones: one more attempt from zero (transient) decides.
      await onDisk(part, () => truncate(part, 0));
      const message = `${ONNX_FILE}: sha256 mismatch (expected ${expected.sha256.slice(0, 12)}…, got ${actual.slice(0, 12)}…)`;
      throw new FetchError(resumedAt > 0 ? `${message} after resuming at ${resumedAt} bytes` : message, resumedAt === 0);
    }
    return { manifest, onnxPath: part };
  }

  /**
   * Writes the response body into the partial file from `offset` ('w' truncates it when starting
   * from zero). A failure reading the body is the network's (transient); one writing the file is
   * the device's own storage (a DiskError, permanent).
   */
  async #writeBody({ response, touch, failure }: OpenRequest, part: string, offset: number, limit: number): Promise<void> {
    const handle = await onDisk(part, () => open(part, offset === 0 ? 'w' : 'r+'));
    let position = offset;
    try {
      if (!response.body) throw new FetchError('model download: empty response', false);
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (position + chunk.length > limit) throw new FetchError(`${ONNX_FILE}: the server sent more than the manifest's ${limit} bytes`, true);
        touch(chunk.length);
        await onDisk(part, () => handle.write(chunk, 0, chunk.length, position));
        position += chunk.length;
        this.onBytes(chunk.length);
      }
      await onDisk(part, () => handle.sync());
    } catch (error) {
      if (error instanceof FetchError) throw error;
      throw new FetchError(`model download interrupted at ${position} bytes: ${failure(error)}`, false);
    } finally {
      // Closing after a failed write can fail the same way; the failure above is the one to report.
      await handle.close().catch(() => {});
    }
  }

  #checkedUrl(url: string): string {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new FetchError(`manifest URL ${JSON.stringify(url)} is not a URL`, true);
    }
    if (parsed.origin !== new URL(this.server.url).origin) {
      throw new FetchError(`manifest URL ${url} is not on the enrolled server ${this.server.url}`, true);
    }
    // fetch() refuses URLs with credentials; the device token is the only credential sent.
    if (parsed.username !== '' || parsed.password !== '') throw new FetchError('manifest URL must not carry a user name or password', true);
    return url;
  }

  /**
   * A GET with the device token, bounded by the limits (idle timeout, minimum rate). Redirects
   * are not followed: the agent talks to its enrolled server only, so a 3xx is refused.
   */
  async #get(url: string, headers: Record<string, string>, callerSignal?: AbortSignal): Promise<OpenRequest> {
    const { idleTimeoutMs, minBytesPerSecond, rateWindowMs } = this.limits;
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, ...(this.signal ? [this.signal] : []), ...(callerSignal ? [callerSignal] : [])]);
    let why: string | undefined;
    const abort = (reason: string) => {
      why ??= reason;
      controller.abort();
    };
    const idle = () => abort(`no data for ${idleTimeoutMs / 1000} s`);
    let timer = setTimeout(idle, idleTimeoutMs);
    /** Bytes received in the current rate window. */
    let received = 0;
    const minPerWindow = (minBytesPerSecond * rateWindowMs) / 1000;
    const rate = setInterval(() => {
      if (received < minPerWindow) abort(`slower than ${minBytesPerSecond} bytes/s (${received} bytes in the last ${rateWindowMs / 1000} s)`);
      received = 0;
    }, rateWindowMs);
    const touch = (bytes: number) => {
      received += bytes;
      clearTimeout(timer);
      timer = setTimeout(idle, idleTimeoutMs);
    };
    const stopTimers = () => {
      clearTimeout(timer);
      clearInterval(rate);
    };
    const failure = (error: unknown) => {
      const cause = (error as { cause?: unknown }).cause ?? error;
      if (why) return why;
      if (callerSignal?.aborted) return `cancelled: ${errorMessage(callerSignal.reason)}`;
      return errorMessage(cause);
    };
    let response: Response;
    try {
      response = await fetch(url, { headers: { ...headers, Authorization: `Bearer ${this.server.token}` }, signal, redirect: 'manual' });
    } catch (error) {
      stopTimers();
      throw new FetchError(`GET ${url}: ${failure(error)}`, false);
    }
    touch(0);
    if (response.status !== 200 && response.status !== 206) {
      stopTimers();
      await response.body?.cancel().catch(() => {});
      if (response.status >= 300 && response.status < 400) {
        const location = response.headers.get('location');
        throw new FetchError(`GET ${url}: HTTP ${response.status} redirect${location ? ` to ${location}` : ''} not followed (artifacts are fetched from the enrolled server only)`, true);
      }
      const permanent = response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429;
      throw new FetchError(`GET ${url}: HTTP ${response.status}`, permanent, retryAfterMs(response.headers.get('retry-after')), response.status);
    }
    const done = async () => {
      stopTimers();
      // A body left unread (an error before its end) would hold the connection open.
      await response.body?.cancel().catch(() => {});
    };
    return { response, touch, done, failure };
  }
}

interface OpenRequest {
  response: Response;
  /** Counts a chunk and restarts the idle timer. */
  touch: (bytes: number) => void;
  /** Stops the timers and releases the connection (cancels an unread body). */
  done: () => Promise<void>;
  /** Why the request failed: the limit it broke, a cancellation, or the network error. */
  failure: (error: unknown) => string;
}

/** The body, refused past `limit` bytes. */
async function readLimited({ response, touch, failure }: OpenRequest, limit: number): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > limit) throw new FetchError(`manifest: larger than ${limit} bytes (Content-Length ${declared})`, true);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for await (const chunk of (response.body ?? []) as unknown as AsyncIterable<Uint8Array>) {
      touch(chunk.length);
      total += chunk.length;
      if (total > limit) throw new FetchError(`manifest: larger than ${limit} bytes`, true);
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof FetchError) throw error;
    // A connection reset or a timeout while reading the body is transient, like one before it.
    throw new FetchError(`manifest download interrupted at ${total} bytes: ${failure(error)}`, false);
  }
  return Buffer.concat(chunks);
}

/** Retry-After as delay-seconds or an HTTP date, in ms (undefined if absent or unreadable). */
function retryAfterMs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** Runs an operation on a file of the device's own storage; a failure is a DiskError naming the file. */
async function onDisk<T>(path: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw new DiskError(describeFileError(path, error));
  }
}

export function sha256OfFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
