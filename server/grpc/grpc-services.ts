import { storedTrainingRecord } from '../artifacts/stored-training-record.ts';
import type { ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import { z } from 'zod';
import { wholeNumber } from '../../shared/util/whole-number.ts';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { DEFAULT_LIST_PAGE, MAX_LIST_OFFSET, MAX_LIST_PAGE } from '../app/list-page.ts';
import { ServiceError } from '../app/service-error.ts';
import type { ServerContext } from '../app/server-context.ts';
import type { GrpcServiceBinding } from '../app/server-module.ts';
import { BlobGcRequestSchema, collectBlobGarbage, DEFAULT_BLOB_GC_AGE_S } from '../artifacts/blob-garbage-collector.ts';
import { checkBlobs, type BlobCheckProgress } from '../artifacts/blob-check.ts';
import { DevicesRepository } from '../store/repositories/devices-repository.ts';
import { blobNotFound, damagedBlobHandler, verifiedChunks } from '../artifacts/damaged-blob.ts';
import { DownloadScope } from '../artifacts/download-scope.ts';
import { checkPush } from '../artifacts/push-check.ts';
import { checkStoredModel, checkUploadedArtifact } from '../artifacts/uploaded-artifact.ts';
import { uploadBlob } from '../artifacts/upload-blob.ts';
import { actorOf } from '../auth/principal.ts';
import { RoleSchema } from '../auth/roles.ts';
import { TokenIdSchema } from '../auth/token-id.ts';
import { jobPage } from '../jobs/job-page.ts';
import { JobIdSchema } from '../jobs/job-id.ts';
import { givenKeys, PruneJobRequestSchema, type PruneJobRequest, type PruneRequestFields } from '../jobs/prune-job-request.ts';
import { PruneOptionsSchema } from '../pruning/options.ts';
import { AliasSchema, VersionNameSchema, VersionRefSchema } from '../registry/names.ts';
import { CreateTokenBodySchema } from '../http/routes/admin-routes.ts';
import { PatchVersionBodySchema } from '../http/routes/models-routes.ts';
import { checkField, checkRequest, pageLimit } from './check-field.ts';
import { AuditFilterSchema } from '../auth/audit-service.ts';
import { GrpcHandlers } from './grpc-call.ts';
import { auditMessage, jobMessage, modelMessage, tokenMessage, versionMessage } from './grpc-messages.ts';
import { parseJsonField } from './json-field.ts';
import { refuseMalformed } from './malformed-messages.ts';
import { idleLimited } from './idle-limited.ts';

/** A blob's name in UploadBlob and DownloadBlob. */
const Sha256Field = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

/** PushVersion's and CheckPush's manifest_json, parsed; absent ('') is refused naming the field (it read "manifest: required (object)", a field the proto does not have). */
function requiredManifestJson(text: string): unknown {
  if (text === '') throw new ServiceError('bad_request', 'manifest_json: required (the signed manifest.json, as JSON text)');
  return parseJsonField(text, 'manifest_json');
}

/** StartPrune's errors name this call's fields, not REST's `body.data.csv`. */
const GRPC_PRUNE_FIELDS: PruneRequestFields = { csv: 'csv', path: 'path', options: 'options_json' };

const DEFAULT_CHUNK = 64 * 1024;
/** How often CheckBlobs sends its progress. */
const PROGRESS_EVERY_MS = 1000;

const MAX_CHUNK = 1024 * 1024;

/** Waits for a server stream's buffer to drain; false if the call is cancelled or closed first. */
function drainedOrGone(call: ServerWritableStream<unknown, unknown>): Promise<boolean> {
  if (call.cancelled) return Promise.resolve(false);
  return new Promise((resolve) => {
    const settle = (drained: boolean) => () => {
      call.off('drain', onDrain).off('cancelled', onGone).off('close', onGone);
      resolve(drained);
    };
    const onDrain = settle(true);
    const onGone = settle(false);
    call.once('drain', onDrain).once('cancelled', onGone).once('close', onGone);
  });
}

/** The gRPC face of the same services the REST routes use. */
export function grpcServices(ctx: ServerContext): Record<'ModelRegistry' | 'Blobs' | 'Tokens' | 'Audit' | 'Jobs', GrpcServiceBinding> {
  const proto = loadFleetpruneProto();
  const deps = { tokens: ctx.tokens, metrics: ctx.metrics, log: ctx.log };
  const models = new GrpcHandlers(deps, 'ModelRegistry');
  const blobs = new GrpcHandlers(deps, 'Blobs');
  const onDamaged = damagedBlobHandler(ctx.blobs, ctx.log, ctx.metrics.blobsDamaged);
  const downloadScope = new DownloadScope(ctx.store.engine);
  const tokens = new GrpcHandlers(deps, 'Tokens');
  const audit = new GrpcHandlers(deps, 'Audit');
  const jobs = new GrpcHandlers(deps, 'Jobs');
  const { registry } = ctx;

  return {
    ModelRegistry: {
      service: proto.ModelRegistry.service,
      implementation: {
        ListModels: models.unary('ListModels', 'read', async () => ({ models: (await registry.listModels()).map(modelMessage) })),
        GetModel: models.unary('GetModel', 'read', async (req: { name: string }) => modelMessage(await registry.getModel(req.name))),
        ListVersions: models.unary('ListVersions', 'read', async (req: { name: string; after_seq: number; limit: number }) => {
          const versions = await registry.listVersions(req.name, {
            afterSeq: checkField(wholeNumber(0, Number.MAX_SAFE_INTEGER), req.after_seq, 'after_seq'),
            limit: checkField(pageLimit(1000, 100), req.limit, 'limit') || 100,
          });
          const statuses = await registry.versionStatuses(versions);
          return { versions: versions.map((version, index) => versionMessage(version, statuses[index])) };
        }),
        // ref as REST's GET /models/:name/versions/:ref checks it; '' is "latest" (see the .proto).
        GetVersion: models.unary('GetVersion', 'read', async (req: { name: string; ref: string }) => {
          const version = await registry.resolve(req.name, req.ref === '' ? 'latest' : checkField(VersionRefSchema, req.ref, 'ref'));
          const [status, training] = await Promise.all([registry.versionStatus(version.model, version.version), storedTrainingRecord(version.manifest, ctx.blobs, onDamaged)]);
          return { ...versionMessage(version, status), training_json: training ? JSON.stringify(training) : '' };
        }),
        PushVersion: models.unary('PushVersion', 'write', async (req: { name: string; manifest_json: string }, principal) => {
          const manifest = await checkUploadedArtifact(requiredManifestJson(req.manifest_json), ctx.blobs, ctx.trustedKeys);
          await registry.checkRegistrable(req.name, manifest);
          await checkStoredModel(manifest, ctx.blobs);
          return versionMessage(await registry.register({ model: req.name, manifest, actor: actorOf(principal) }));
        }),
        CheckPush: models.unary('CheckPush', 'write', async (req: { name: string; manifest_json: string }) => {
          const { missingBlobs, registeredAs } = await checkPush(req.name, requiredManifestJson(req.manifest_json), ctx);
          return { missing_sha256: missingBlobs, registered_as: registeredAs ?? '' };
        }),
        SetAlias: models.unary('SetAlias', 'write', async (req: { name: string; alias: string; version: string }, principal) => {
          const alias = checkField(AliasSchema, req.alias, 'alias');
          const version = req.version === '' ? null : checkField(VersionNameSchema, req.version, 'version');
          const result = await registry.setAlias(req.name, alias, version, principal);
          return result ? { version: versionMessage(result) } : {};
        }),
        // `optional bool retired`: absent arrives as undefined and is refused, as REST refuses PATCH {}.
        SetRetired: models.unary('SetRetired', 'write', async (req: { name: string; version: string; retired?: boolean }, principal) => {
          const version = checkField(VersionNameSchema, req.version, 'version');
          const retired = checkField(PatchVersionBodySchema.shape.retired, req.retired, 'retired');
          return versionMessage(await registry.setRetired(req.name, version, retired, principal));
        }),
      },
    },
    Blobs: {
      service: proto.Blobs.service,
      implementation: {
        UploadBlob: blobs.clientStream('UploadBlob', 'write', async (call: ServerReadableStream<{ sha256: string; data: Buffer }, unknown>, principal) => {
          let sha256: string | null = null;
          const idleMs = ctx.config.idleTimeoutSeconds * 1000;
          async function* data() {
            // As REST closes an upload that stops sending (--idle-timeout): else a client that stalls
            // holds its partial file and a descriptor for as long as its connection answers pings.
            for await (const chunk of idleLimited(call as AsyncIterable<{ sha256: string; data: Buffer }>, idleMs, () => new ServiceError('request_timeout', `the upload sent nothing for ${idleMs / 1000} s (the server's --idle-timeout); nothing was stored: send it again`))) {
              refuseMalformed(chunk);
              if (sha256 === null) {
                if (!chunk.sha256) throw new ServiceError('bad_request', 'sha256: the first message must name the blob');
                // As DownloadBlob words it, naming the field.
                sha256 = checkField(Sha256Field, chunk.sha256, 'sha256');
              } else if (chunk.sha256 && chunk.sha256 !== sha256) {
                // A later message may repeat the first one's sha256, never name another blob.
                throw new ServiceError('bad_request', 'sha256: a later message names another blob than the first one; send one blob per call');
              }
              if (chunk.data.length > 0) yield chunk.data;
            }
          }
          const iterator = data()[Symbol.asyncIterator]();
          const first = await iterator.next();
          if (sha256 === null) throw new ServiceError('bad_request', 'sha256: the upload is empty');
          async function* all() {
            if (!first.done) yield first.value;
            for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
          }
          const stored = await uploadBlob(ctx, { source: all(), sha256, maxBytes: ctx.config.maxBlobBytes, principal });
          return { sha256: stored.sha256, bytes: String(stored.bytes), created: stored.created };
        }),
        DownloadBlob: blobs.serverStream('DownloadBlob', 'download', async (call: ServerWritableStream<{ sha256: string; offset: string; chunk_size: number }, unknown>, principal) => {
          const sha256 = checkField(Sha256Field, call.request.sha256, 'sha256');
          await downloadScope.check(principal, { blob: sha256 });
          // Opened before anything is sent: the open file reads whole even if another server's
          // garbage collection removes the blob now.
          const info = await ctx.blobs.openForRead(sha256);
          if (!info) throw await blobNotFound(ctx.blobs, sha256);
          try {
            const offset = Number(call.request.offset || 0);
            if (!Number.isSafeInteger(offset) || offset < 0 || (offset > 0 && offset >= info.bytes)) {
              throw new ServiceError('range_not_satisfiable', `offset ${call.request.offset} is outside the ${info.bytes}-byte blob`);
            }
            const requestedChunk = call.request.chunk_size || 0;
            if (!Number.isSafeInteger(requestedChunk) || requestedChunk < 0) {
              throw new ServiceError('bad_request', `chunk_size ${call.request.chunk_size} must be a positive number of bytes (0 for the default ${DEFAULT_CHUNK})`);
            }
            const chunkSize = Math.min(requestedChunk || DEFAULT_CHUNK, MAX_CHUNK);
            if (info.bytes === 0) return;
            let position = offset;
            // Reads of exactly chunkSize bytes (the last may be shorter) are the chunks: no re-buffering.
            const stream = info.stream({ start: offset, end: info.bytes - 1 }, chunkSize);
            stream.on('error', () => {});
            call.on('cancelled', () => stream.destroy());
            // A whole blob is checked against its hash as it is sent; one from an offset cannot be.
            const chunks = offset === 0 ? verifiedChunks(stream as AsyncIterable<Buffer>, sha256, info, onDamaged) : (stream as AsyncIterable<Buffer>);
            for await (const data of chunks) {
              if (call.cancelled) return;
              const ok = call.write({ offset: String(position), data, total_bytes: String(info.bytes) });
              position += data.length;
              ctx.metrics.blobBytesServed.inc({ transport: 'grpc' }, data.length);
              if (!ok && !(await drainedOrGone(call))) return;
            }
          } finally {
            await info.close(); // unless its stream has it: that closes it when it ends or is destroyed
          }
        }),
        CheckBlobs: blobs.serverStream('CheckBlobs', 'admin', async (call: ServerWritableStream<{ dry_run: boolean }, unknown>, principal) => {
          const cancelled = new AbortController();
          // A client that goes away stops the check (the call then ends CANCELLED).
          if (call.cancelled) return;
          call.once('cancelled', () => cancelled.abort());
          let sentAt = 0;
          const send = (progress: BlobCheckProgress) => {
            // About once a second, and the last (all checked) always.
            if (Date.now() - sentAt < PROGRESS_EVERY_MS && progress.blobs < progress.totalBlobs) return;
            sentAt = Date.now();
            call.write({ progress: { blobs: String(progress.blobs), total_blobs: String(progress.totalBlobs), bytes: String(progress.bytes), total_bytes: String(progress.totalBytes) } });
          };
          const result = await checkBlobs(
            { store: ctx.store, blobs: ctx.blobs, devices: new DevicesRepository(ctx.store.engine), onDamaged },
            { dryRun: call.request.dry_run, actor: actorOf(principal), onProgress: send, signal: cancelled.signal },
          );
          call.write({
            result: {
              dry_run: result.dryRun,
              versions: String(result.versions),
              blobs: String(result.blobs),
              bytes: String(result.bytes),
              sound: String(result.sound),
              problems: result.problems.map((problem) => ({
                sha256: problem.sha256,
                bytes: String(problem.bytes),
                problem: problem.problem,
                detail: problem.detail,
                set_aside: problem.setAside ?? '',
                versions: problem.versions,
                devices_active: String(problem.devices.active),
                devices_candidate: String(problem.devices.candidate),
                devices_previous: String(problem.devices.previous),
              })),
            },
          });
        }),
        CollectGarbage: blobs.unary('CollectGarbage', 'admin', async (req: { dry_run: boolean; min_age_s: string }, principal) => {
          const minAge = Number(req.min_age_s || 0);
          const minAgeSeconds = minAge === 0 ? DEFAULT_BLOB_GC_AGE_S : checkField(BlobGcRequestSchema.shape.minAgeSeconds, minAge, 'min_age_s');
          const result = await collectBlobGarbage(
            { store: ctx.store, blobs: ctx.blobs, freedBytes: ctx.metrics.blobGcFreedBytes },
            { dryRun: req.dry_run, minAgeSeconds, actor: actorOf(principal) },
          );
          return {
            dry_run: result.dryRun,
            scanned: String(result.scanned),
            referenced: String(result.referenced),
            young: String(result.young),
            removed: result.removed.map((blob) => ({ sha256: blob.sha256, bytes: String(blob.bytes), created: false })),
            freed_bytes: String(result.freedBytes),
            stale_uploads: String(result.staleUploads),
          };
        }),
      },
    },
    Tokens: {
      service: proto.Tokens.service,
      implementation: {
        CreateToken: tokens.unary('CreateToken', 'admin', async (req: { role: string; label: string; expires_in_s: number }, principal) => {
          const role = checkField(RoleSchema, req.role, 'role');
          // The label and expiry rules of REST's POST /api/tokens; '' and 0 are absent.
          const label = checkField(CreateTokenBodySchema.shape.label, req.label === '' ? undefined : req.label, 'label');
          const expiresInSeconds = checkField(CreateTokenBodySchema.shape.expiresInSeconds, req.expires_in_s || undefined, 'expires_in_s');
          const created = await ctx.tokens.create(role, label ?? `${role} token`, actorOf(principal), { expiresInSeconds });
          return { token: created.token, record: tokenMessage(created.record) };
        }),
        ListTokens: tokens.unary('ListTokens', 'admin', async () => ({ tokens: (await ctx.tokens.list()).map(tokenMessage) })),
        RevokeToken: tokens.unary('RevokeToken', 'admin', async (req: { id: string }, principal) => {
          await ctx.tokens.revoke(checkField(TokenIdSchema, req.id, 'id'), principal);
          return {};
        }),
      },
    },
    Audit: {
      service: proto.Audit.service,
      implementation: {
        ListAudit: audit.unary('ListAudit', 'read', async (req: { limit: number; before: string; action: string; actor: string; target: string }) => ({
          entries: (
            await ctx.audit.list({
              limit: checkField(pageLimit(1000, 100), req.limit, 'limit') || 100,
              beforeId: checkField(wholeNumber(0, Number.MAX_SAFE_INTEGER), Number(req.before), 'before') || undefined,
              // Empty is proto3's unset: no filter.
              ...checkRequest(AuditFilterSchema, { ...(req.action ? { action: req.action } : {}), ...(req.actor ? { actor: req.actor } : {}), ...(req.target ? { target: req.target } : {}) }, {}),
            })
          ).map(auditMessage),
          filtered: true,
        })),
      },
    },
    Jobs: {
      service: proto.Jobs.service,
      implementation: {
        StartPrune: jobs.unary(
          'StartPrune',
          'write',
          async (req: { name: string; label: string; task: string; csv: string; path: string; options_json: string }, principal) => {
            if ((req.csv === '') === (req.path === '')) throw new ServiceError('bad_request', 'give exactly one of csv and path');
            // REST refuses a body over --max-body-bytes (413); inline CSV here meets the same limit.
            const csvBytes = Buffer.byteLength(req.csv, 'utf8');
            if (csvBytes > ctx.config.maxBodyBytes) {
              throw new ServiceError('payload_too_large', `csv: ${csvBytes} bytes, larger than the ${ctx.config.maxBodyBytes}-byte limit (--max-body-bytes)`);
            }
            const rawOptions = req.options_json ? parseJsonField(req.options_json, 'options_json') : undefined;
            const request: PruneJobRequest = {
              name: checkField(PruneJobRequestSchema.shape.name, req.name, 'name'),
              label: checkField(PruneJobRequestSchema.shape.label, req.label, 'label'),
              ...(req.task ? { task: checkField(PruneJobRequestSchema.shape.task, req.task, 'task') } : {}),
              data: req.csv ? { csv: req.csv } : { path: req.path },
              ...(rawOptions !== undefined ? { options: checkField(PruneOptionsSchema, rawOptions, 'options_json') } : {}),
            };
            return jobMessage(await ctx.jobs.startPrune(request, principal, GRPC_PRUNE_FIELDS, givenKeys(rawOptions)));
          },
        ),
        // Ids checked as REST checks them: a 5000-character id is a bad request, not echoed in a NOT_FOUND.
        GetJob: jobs.unary('GetJob', 'read', async (req: { id: string }) => jobMessage(await ctx.jobs.get(checkField(JobIdSchema, req.id, 'id')))),
        ListJobs: jobs.unary('ListJobs', 'read', async (req: { limit: number; offset: number }) => {
          // As GET /api/jobs (the same page): limit 0 (unset) is its default.
          const limit = checkField(pageLimit(MAX_LIST_PAGE, DEFAULT_LIST_PAGE), req.limit, 'limit') || undefined;
          const offset = checkField(wholeNumber(0, MAX_LIST_OFFSET), req.offset, 'offset');
          const page = await jobPage(ctx.jobs, { limit, offset });
          return { jobs: page.items.map(jobMessage), total: page.total, more: page.more };
        }),
        CancelJob: jobs.unary('CancelJob', 'write', async (req: { id: string }, principal) =>
          jobMessage(await ctx.jobs.cancel(checkField(JobIdSchema, req.id, 'id'), principal)),
        ),
        WatchJob: jobs.eventStream('WatchJob', 'read', ctx.stalledStreams, (call: ServerWritableStream<{ id: string }, object>, { send, signal }) => {
          const id = checkField(JobIdSchema, call.request.id, 'id');
          return new Promise<void>((resolve, reject) => {
            ctx.jobs
              .watch(
                id,
                (event) => {
                  if (event.type === 'state') send({ job: jobMessage(event.job) });
                  else send({ progress: { ...event.progress, detail: event.progress.detail ?? '' } });
                },
                resolve,
              )
              .then((unsubscribe) => {
                // A client that cancelled (or stalled) while the watch was being set up missed the event.
                if (signal.aborted) return (unsubscribe(), resolve());
                signal.addEventListener('abort', () => (unsubscribe(), resolve()), { once: true });
              }, reject);
          });
        }),
      },
    },
  };
}
