import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { MANIFEST_FILE, ONNX_FILE, artifactId, type Manifest } from '../../shared/artifact/manifest.ts';

export interface RecordedRequest {
  path: string;
  range: string | undefined;
  status: number;
}

/**
 * Test fixture standing in for the fleet server's artifact routes, implementing exactly the
 * agent's contract: `GET /api/artifacts/{id}/manifest.json` and `GET /api/blobs/{sha256}` (ETag
 * `"sha256"`, `Range: bytes=N-` → 206, If-Range), both behind `Authorization: Bearer <token>`.
 * Blobs can be throttled (to interrupt downloads) and replaced (to tamper with them).
 */
export class ArtifactHttpServer {
  readonly requests: RecordedRequest[] = [];
  readonly #manifests = new Map<string, Buffer>();
  readonly #blobs = new Map<string, Buffer>();
  /** When set, blob bodies are sent in chunks of this many bytes every `delayMs`. */
  throttle: { chunkBytes: number; delayMs: number } | undefined;
  #server: Server;
  #url = '';

  private constructor(readonly token: string) {
    this.#server = createServer((request, response) => {
      this.#handle(request, response).catch(() => response.destroy());
    });
  }

  static async start(token: string): Promise<ArtifactHttpServer> {
    const instance = new ArtifactHttpServer(token);
    await new Promise<void>((resolve) => instance.#server.listen(0, '127.0.0.1', resolve));
    instance.#url = `http://127.0.0.1:${(instance.#server.address() as AddressInfo).port}`;
    return instance;
  }

  get url(): string {
    return this.#url;
  }

  manifestUrl(id: string): string {
    return `${this.#url}/api/artifacts/${id}/manifest.json`;
  }

  /** Serves the manifest and model.onnx of an artifact directory; returns its id and manifest. */
  async addArtifact(dir: string): Promise<{ id: string; manifest: Manifest }> {
    const manifestBytes = await readFile(join(dir, MANIFEST_FILE));
    const manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
    const id = artifactId(manifest);
    this.#manifests.set(id, manifestBytes);
    this.#blobs.set(manifest.files[ONNX_FILE]!.sha256, await readFile(join(dir, ONNX_FILE)));
    return { id, manifest };
  }

  setManifest(id: string, body: string | Buffer): void {
    this.#manifests.set(id, Buffer.from(body));
  }

  setBlob(sha256: string, body: Buffer): void {
    this.#blobs.set(sha256, body);
  }

  blobRequests(): RecordedRequest[] {
    return this.requests.filter((request) => request.path.startsWith('/api/blobs/'));
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    const record = (status: number) => this.requests.push({ path, range: request.headers.range, status });
    if (request.headers.authorization !== `Bearer ${this.token}`) {
      record(401);
      response.writeHead(401).end('unauthorized');
      return;
    }
    const manifestMatch = /^\/api\/artifacts\/([0-9a-f]{64})\/manifest\.json$/.exec(path);
    if (manifestMatch) {
      const body = this.#manifests.get(manifestMatch[1]!);
      record(body ? 200 : 404);
      if (!body) return void response.writeHead(404).end('no such artifact');
      response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length }).end(body);
      return;
    }
    const blobMatch = /^\/api\/blobs\/([0-9a-f]{64})$/.exec(path);
    const blob = blobMatch ? this.#blobs.get(blobMatch[1]!) : undefined;
    if (!blobMatch || !blob) {
      record(404);
      response.writeHead(404).end('not found');
      return;
    }
    const etag = `"${blobMatch[1]}"`;
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
    const ifRange = request.headers['if-range'];
    if (range && (ifRange === undefined || ifRange === etag)) {
      start = Number(range[1]);
      if (start >= blob.length) {
        record(416);
        response.writeHead(416, { 'Content-Range': `bytes */${blob.length}` }).end();
        return;
      }
    }
    const status = start > 0 ? 206 : 200;
    record(status);
    const headers: Record<string, string | number> = { ETag: etag, 'Accept-Ranges': 'bytes', 'Content-Length': blob.length - start, 'Content-Type': 'application/octet-stream' };
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${blob.length - 1}/${blob.length}`;
    response.writeHead(status, headers);
    const body = blob.subarray(start);
    const throttle = this.throttle;
    if (!throttle) return void response.end(body);
    for (let offset = 0; offset < body.length; offset += throttle.chunkBytes) {
      if (response.destroyed) return;
      response.write(body.subarray(offset, offset + throttle.chunkBytes));
      await new Promise((resolve) => setTimeout(resolve, throttle.delayMs));
    }
    response.end();
  }
}
