import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, truncate } from 'node:fs/promises';
import { ManifestSchema, ONNX_FILE, artifactId, type Manifest } from '../shared/artifact/manifest.ts';
import { verifyManifestSignature } from '../shared/artifact/signature.ts';
import type { Assignment } from '../shared/protocol/payloads.ts';
import { describeZodError, errorMessage } from '../shared/util/errors.ts';
import type { DataDir } from './data-dir.ts';

/** A fetch failure. `permanent` ones (verification, 4xx) are refused; the others are retried. */
export class FetchError extends Error {
  constructor(message: string, readonly permanent: boolean) {
    super(message);
    this.name = 'FetchError';
  }
}

export interface ServerAccess {
  /** Base URL of the fleet server; assignment URLs must be on its origin. */
  url: string;
  token: string;
  /** The server's ed25519 key pinned at enrollment. */
  publicKey: KeyObject;
}

export interface FetchedModel {
  manifest: Manifest;
  /** The downloaded, size- and sha256-verified model.onnx (still a .part file in the downloads dir). */
  onnxPath: string;
}

const MAX_MANIFEST_BYTES = 1024 * 1024;
const IDLE_TIMEOUT_MS = 30_000;

/**
 * Fetches what an assignment names: the signed manifest (checked against the assignment's
 * artifact id and the pinned key) and then model.onnx by its sha256, resuming a partial
 * download with `Range: bytes=N-` / If-Range. Nothing it returns is unverified.
 */
export class ArtifactFetcher {
  constructor(
    readonly server: ServerAccess,
    readonly dataDir: DataDir,
    readonly onBytes: (bytes: number) => void = () => {},
    /** Aborts every request in flight (the agent is stopping). */
    readonly signal?: AbortSignal,
  ) {}

  async fetchVerifiedManifest(assignment: Assignment): Promise<Manifest> {
    const url = this.#checkedUrl(assignment.url);
    const request = await this.#get(url, {});
    let text: string;
    try {
      text = await readLimited(request, MAX_MANIFEST_BYTES);
    } finally {
      request.done();
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new FetchError('manifest: not valid JSON', true);
    }
    const parsed = ManifestSchema.safeParse(json);
    if (!parsed.success) throw new FetchError(`manifest: ${describeZodError(parsed.error)}`, true);
    const manifest = parsed.data;
    const id = artifactId(manifest);
    if (id !== assignment.sha256) throw new FetchError(`manifest: artifact id is ${id}, but the assignment names ${assignment.sha256}`, true);
    const signatureFailure = verifyManifestSignature(manifest, this.server.publicKey);
    if (signatureFailure) throw new FetchError(`manifest ${signatureFailure}`, true);
    if (manifest.name !== assignment.model) throw new FetchError(`manifest: model is ${manifest.name}, but the assignment names ${assignment.model}`, true);
    if (manifest.version !== undefined && manifest.version !== assignment.version) {
      throw new FetchError(`manifest: version is ${manifest.version}, but the assignment names ${assignment.version}`, true);
    }
    return manifest;
  }

  /** Downloads (or resumes) model.onnx of a verified manifest and checks its size and sha256. */
  async downloadModel(manifest: Manifest): Promise<FetchedModel> {
    const expected = manifest.files[ONNX_FILE]!;
    await mkdir(this.dataDir.downloadsDir, { recursive: true });
    const part = this.dataDir.partFile(expected.sha256);
    let have = (await stat(part).catch(() => undefined))?.size ?? 0;
    if (have > expected.bytes) {
      await truncate(part, 0);
      have = 0;
    }
    if (have < expected.bytes) {
      const url = new URL(`api/blobs/${expected.sha256}`, withSlash(this.server.url)).toString();
      const headers: Record<string, string> = have > 0 ? { Range: `bytes=${have}-`, 'If-Range': `"${expected.sha256}"` } : {};
      const request = await this.#get(url, headers);
      try {
        const { response } = request;
        let offset = have;
        if (response.status === 200) offset = 0;
        else if (response.status === 206) {
          const range = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '');
          if (!range || Number(range[1]) !== have) throw new FetchError(`model download: unexpected Content-Range ${response.headers.get('content-range')}`, false);
        }
        await this.#writeBody(request, part, offset, expected.bytes);
      } finally {
        request.done();
      }
    }
    const size = (await stat(part)).size;
    if (size !== expected.bytes) {
      await truncate(part, 0);
      throw new FetchError(`${ONNX_FILE}: size mismatch (expected ${expected.bytes} bytes, got ${size})`, true);
    }
    const actual = await sha256OfFile(part);
    if (actual !== expected.sha256) {
      // A complete file with the wrong content must not be resumed from. If it was resumed, the
      // bad bytes may be the old partial ones: one more attempt from zero (transient) decides.
      await truncate(part, 0);
      const message = `${ONNX_FILE}: sha256 mismatch (expected ${expected.sha256.slice(0, 12)}…, got ${actual.slice(0, 12)}…)`;
      throw new FetchError(have > 0 ? `${message} after resuming at ${have} bytes` : message, have === 0);
    }
    return { manifest, onnxPath: part };
  }

  async #writeBody({ response, touch }: OpenRequest, part: string, offset: number, limit: number): Promise<void> {
    const handle = await open(part, offset === 0 ? 'w' : 'r+');
    let position = offset;
    try {
      if (offset === 0) await handle.truncate(0);
      if (!response.body) throw new FetchError('model download: empty response', false);
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (position + chunk.length > limit) throw new FetchError(`${ONNX_FILE}: the server sent more than the manifest's ${limit} bytes`, true);
        touch();
        await handle.write(chunk, 0, chunk.length, position);
        position += chunk.length;
        this.onBytes(chunk.length);
      }
      await handle.sync();
    } catch (error) {
      if (error instanceof FetchError) throw error;
      throw new FetchError(`model download interrupted at ${position} bytes: ${errorMessage(error)}`, false);
    } finally {
      await handle.close();
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

  /** A GET with the device token that fails when no byte arrives for IDLE_TIMEOUT_MS. */
  async #get(url: string, headers: Record<string, string>): Promise<OpenRequest> {
    const controller = new AbortController();
    const signal = this.signal ? AbortSignal.any([controller.signal, this.signal]) : controller.signal;
    let timer = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
    const touch = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
    };
    const done = () => clearTimeout(timer);
    let response: Response;
    try {
      response = await fetch(url, { headers: { ...headers, Authorization: `Bearer ${this.server.token}` }, signal });
    } catch (error) {
      done();
      throw new FetchError(`GET ${url}: ${errorMessage((error as { cause?: unknown }).cause ?? error)}`, false);
    }
    touch();
    if (response.status !== 200 && response.status !== 206) {
      done();
      await response.body?.cancel();
      const permanent = response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429;
      throw new FetchError(`GET ${url}: HTTP ${response.status}`, permanent);
    }
    return { response, touch, done };
  }
}

interface OpenRequest {
  response: Response;
  /** Restarts the idle timer (a chunk arrived). */
  touch: () => void;
  /** Stops the idle timer. */
  done: () => void;
}

async function readLimited({ response, touch }: OpenRequest, limit: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    touch();
    total += chunk.length;
    if (total > limit) throw new FetchError(`manifest: larger than ${limit} bytes`, true);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
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
