import { z } from 'zod';
import { ServiceError } from '../../app/service-error.ts';
import type { ServerContext } from '../../app/server-context.ts';
import { BlobGcRequestSchema, collectBlobGarbage } from '../../artifacts/blob-garbage-collector.ts';
import { actorOf } from '../../auth/principal.ts';
import { BlobCheckResultSchema, BlobGcResultSchema, BlobSchema } from '../api-schemas.ts';
import { BlobCheckRequestSchema, checkBlobs } from '../../artifacts/blob-check.ts';
import { DevicesRepository } from '../../store/repositories/devices-repository.ts';
import { sendBlob } from '../blob-download.ts';
import { ResponseClosedError } from '../send-error.ts';
import { damagedBlobHandler } from '../../artifacts/damaged-blob.ts';
import { DownloadScope } from '../../artifacts/download-scope.ts';
import { uploadBlob } from '../../artifacts/upload-blob.ts';
import { encodedBodyRefusal } from '../identity-encoding.ts';
import { defineRoute, type RouteSpec } from '../route-spec.ts';

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
const BlobParams = z.strictObject({ sha256: Sha256 });
const ArtifactParams = z.strictObject({ artifactId: Sha256 });

const tag = 'artifacts';

/**
 * Blob upload and the download URLs edge agents use: any token may download, an enrolled device's
 * only what was assigned to it (DownloadScope).
 */
export function artifactsRoutes(ctx: ServerContext): RouteSpec[] {
  const { blobs, registry, config } = ctx;
  const onDamaged = damagedBlobHandler(blobs, ctx.log, ctx.metrics.blobsDamaged);
  const scope = new DownloadScope(ctx.store.engine);
  return [
    defineRoute({
      method: 'put',
      path: '/blobs/:sha256',
      operationId: 'uploadBlob',
      summary: 'Upload one artifact file; its bytes must hash to :sha256 (streamed, size-limited by --max-blob-bytes)',
      tag,
      permission: 'write',
      params: BlobParams,
      bodyKind: 'binary',
      // The bytes are taken as they are, whatever the request calls them (its sha256 is what is checked).
      bodyMediaTypes: ['application/octet-stream', '*/*'],
      responses: {
        201: { description: 'stored', schema: BlobSchema },
        200: { description: 'already stored', schema: BlobSchema },
      },
      handle: async ({ req, res, params, principal }) => {
        const declared = Number(req.headers['content-length']);
        if (Number.isFinite(declared) && declared > config.maxBlobBytes) {
          res.setHeader('Connection', 'close');
          throw new ServiceError('payload_too_large', `blob of ${declared} bytes exceeds the upload limit of ${config.maxBlobBytes} bytes (--max-blob-bytes)`);
        }
        // The bytes are hashed and stored as they arrive, undecoded: a body sent with
        // Content-Encoding gzip was stored compressed under the compressed bytes' hash, or refused
        // with a hash mismatch that never named the encoding. Refused up front instead, as the
        // rollout spec route (readTextBody) refuses one.
        const encoded = encodedBodyRefusal(req, "send the file's bytes as they are, without Content-Encoding");
        if (encoded) {
          res.setHeader('Connection', 'close');
          throw encoded;
        }
        try {
          const stored = await uploadBlob(ctx, { source: req, sha256: params.sha256, maxBytes: config.maxBlobBytes, principal: principal! });
          return { status: stored.created ? 201 : 200, json: stored };
        } catch (error) {
          res.setHeader('Connection', 'close');
          throw error;
        }
      },
    }),
    defineRoute({
      method: 'get',
      path: '/blobs/:sha256',
      operationId: 'downloadBlob',
      summary: 'Download a file by sha256 (a device token: only files of artifacts assigned to its device); ETag and Range (206, If-Range, 416) let downloads resume; If-Match that names another file is 412',
      tag,
      permission: 'download',
      params: BlobParams,
      responses: {
        200: { description: 'the bytes', contentType: 'application/octet-stream' },
        206: { description: 'the requested range', contentType: 'application/octet-stream' },
        304: { description: 'not modified (If-None-Match)' },
      },
      handle: async ({ req, res, params, principal }) => {
        await scope.check(principal!, { blob: params.sha256 });
        // Body bytes as they are sent: none for HEAD or 304, those sent before the client went away for a download cut short.
        await sendBlob(req, res, blobs, params.sha256, (bytes) => ctx.metrics.blobBytesServed.inc({ transport: 'http' }, bytes), onDamaged);
      },
    }),
    defineRoute({
      method: 'post',
      path: '/blobs/gc',
      operationId: 'collectBlobGarbage',
      summary: 'Remove blobs no registered version lists (interrupted uploads) once idle for minAgeSeconds; dryRun only reports',
      tag,
      permission: 'admin',
      bodyKind: 'json',
      body: BlobGcRequestSchema,
      responses: { 200: { description: 'what was (or, with dryRun, would be) removed', schema: BlobGcResultSchema } },
      handle: async ({ body, principal }) => ({
        json: await collectBlobGarbage({ store: ctx.store, blobs, freedBytes: ctx.metrics.blobGcFreedBytes }, { ...body, actor: actorOf(principal!) }),
      }),
    }),
    defineRoute({
      method: 'post',
      path: '/blobs/check',
      operationId: 'checkBlobs',
      summary:
        'Read every file a registered version lists and check it against its sha256: missing and damaged ones, with the versions that list them and the live devices that hold those; damaged copies are moved aside (so a push uploads them again) unless dryRun',
      tag,
      permission: 'admin',
      bodyKind: 'json',
      body: BlobCheckRequestSchema,
      responses: { 200: { description: 'what the check found (the status is 200 whatever it found: see problems)', schema: BlobCheckResultSchema } },
      handle: async ({ body, principal, res }) => {
        // A client that goes away stops the check (the response closes before it is written).
        const gone = new AbortController();
        res.once('close', () => {
          if (!res.writableEnded) gone.abort();
        });
        try {
          return {
            json: await checkBlobs(
              { store: ctx.store, blobs, devices: new DevicesRepository(ctx.store.engine), onDamaged },
              { dryRun: body.dryRun, actor: actorOf(principal!), signal: gone.signal },
            ),
          };
        } catch (error) {
          if (gone.signal.aborted) throw new ResponseClosedError('the client went away before the blob check was done');
          throw error;
        }
      },
    }),
    defineRoute({
      method: 'get',
      path: '/artifacts/:artifactId/manifest.json',
      operationId: 'downloadManifest',
      summary: 'The signed manifest of a registered artifact (a device token: only one assigned to its device)',
      tag,
      permission: 'download',
      params: ArtifactParams,
      responses: { 200: { description: 'manifest.json', schema: z.record(z.string(), z.unknown()) } },
      handle: async ({ params, res, principal }) => {
        await scope.check(principal!, { artifactId: params.artifactId });
        const version = await registry.getByArtifact(params.artifactId);
        res.setHeader('ETag', `"${params.artifactId}"`);
        res.setHeader('Cache-Control', 'private, max-age=31536000, immutable');
        return { json: version.manifest };
      },
    }),
  ];
}
