import { z } from 'zod';
import { checkPush } from '../../artifacts/push-check.ts';
import { checkStoredModel, checkUploadedArtifact } from '../../artifacts/uploaded-artifact.ts';
import { storedTrainingRecord } from '../../artifacts/stored-training-record.ts';
import { damagedBlobHandler } from '../../artifacts/damaged-blob.ts';
import { TrainingRecordSchema } from '../../../shared/artifact/training-record.ts';
import type { ServerContext } from '../../app/server-context.ts';
import { actorOf } from '../../auth/principal.ts';
import { AliasSchema, ModelNameSchema, VersionNameSchema, VersionRefSchema } from '../../registry/names.ts';
import { ModelSchema, PageQuerySchema, VersionSchema, queryInteger } from '../api-schemas.ts';
import { versionView, versionWithStatusView } from '../api-views.ts';
import { defineRoute, type RouteSpec } from '../route-spec.ts';

const NameParams = z.strictObject({ name: ModelNameSchema });
const VersionParams = z.strictObject({ name: ModelNameSchema, version: VersionNameSchema });
const RefParams = z.strictObject({ name: ModelNameSchema, ref: VersionRefSchema });
const AliasParams = z.strictObject({ name: ModelNameSchema, alias: AliasSchema });

export const PushVersionBodySchema = z.strictObject({
  /** The signed manifest.json; every file it lists must have been uploaded with PUT /api/blobs/:sha256. */
  manifest: z.record(z.string(), z.unknown()),
});
const PushCheckSchema = z.strictObject({
  /** sha256 of each file the manifest lists that the server does not store yet: PUT these, then POST the version. */
  missingBlobs: z.array(z.string()),
  /** MODEL@VERSION: the artifact is registered already, and the server lacks these of its files (lost or found damaged): PUT them to restore it; there is nothing to register. */
  registeredAs: z.string().optional(),
});
/** A version and its latest status (production, failed, rolled-back, superseded), null before any. */
const VersionWithStatusSchema = VersionSchema.extend({
  status: z
    .strictObject({ status: z.enum(['production', 'failed', 'rolled-back', 'superseded', 'withdrawn']), reason: z.string(), at: z.string() })
    .nullable()
    .describe('the latest status a rollout (or a move of the production alias) gave the version, with its reason: production, failed, rolled-back, superseded (another version became production) or withdrawn (the production alias was cleared); null when none has'),
});
/** GET of one version: with what trained it. */
const VersionDetailSchema = VersionWithStatusSchema.extend({
  training: TrainingRecordSchema.nullable().describe(
    "the artifact's training.json (signed with it: the manifest lists its sha256): the fleetprune version and TensorFlow.js backend that trained the model and the options in effect; null for an artifact without one (written before it existed), or when the server's copy is missing or found damaged (set aside, counted in fleetprune_blobs_damaged_total and logged: `models push` of the artifact restores it)",
  ),
});
const AllVersionsQuery = z
  .strictObject({
    limit: queryInteger(1, 1000).optional(),
    afterModel: ModelNameSchema.optional(),
    afterSeq: queryInteger(0).optional(),
  })
  .refine((query) => (query.afterModel === undefined) === (query.afterSeq === undefined), { path: ['afterSeq'], message: 'give ?afterModel and ?afterSeq together (the last version of the page before), or neither' });
export const SetAliasBodySchema = z.strictObject({ version: VersionNameSchema });
export const PatchVersionBodySchema = z.strictObject({ retired: z.boolean() });

const tag = 'models';

export function modelsRoutes(ctx: ServerContext): RouteSpec[] {
  const { registry } = ctx;
  const onDamaged = damagedBlobHandler(ctx.blobs, ctx.log, ctx.metrics.blobsDamaged);
  return [
    defineRoute({
      method: 'get',
      path: '/models',
      operationId: 'listModels',
      summary: 'List models',
      tag,
      permission: 'read',
      responses: { 200: { description: 'models', schema: z.strictObject({ models: z.array(ModelSchema) }) } },
      handle: async () => ({ json: { models: await registry.listModels() } }),
    }),
    defineRoute({
      method: 'get',
      path: '/versions',
      operationId: 'listAllVersions',
      summary:
        'Versions of every model, by model name then registration order, each with its latest rollout status: a page of ?limit (1-1000, default 100) ' +
        'after version ?afterSeq of model ?afterModel (the last of the page before); `more` says whether more follow',
      tag,
      permission: 'read',
      query: AllVersionsQuery,
      responses: { 200: { description: 'versions', schema: z.strictObject({ versions: z.array(VersionWithStatusSchema), more: z.boolean() }) } },
      handle: async ({ query }) => {
        const limit = query.limit ?? 100;
        const after = query.afterModel === undefined ? undefined : { model: query.afterModel, seq: query.afterSeq! };
        // One more than the page: whether more follow, without a page that turns out empty.
        const found = await registry.listAllVersions({ ...(after ? { after } : {}), limit: limit + 1 });
        const versions = found.slice(0, limit);
        const statuses = await registry.versionStatuses(versions);
        return { json: { versions: versions.map((version, index) => versionWithStatusView(version, statuses[index]!)), more: found.length > limit } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/models/:name',
      operationId: 'getModel',
      summary: 'One model: when and by whom it was created, its version count and latest version',
      tag,
      permission: 'read',
      params: NameParams,
      responses: { 200: { description: 'the model', schema: ModelSchema } },
      handle: async ({ params }) => ({ json: await registry.getModel(params.name) }),
    }),
    defineRoute({
      method: 'get',
      path: '/models/:name/versions',
      operationId: 'listVersions',
      summary: 'Versions of a model in registration order, each with its latest rollout status: a page of ?limit (1-1000, default 100) after seq ?after; `more` says whether more follow',
      tag,
      permission: 'read',
      params: NameParams,
      query: PageQuerySchema,
      responses: { 200: { description: 'versions', schema: z.strictObject({ versions: z.array(VersionWithStatusSchema), more: z.boolean() }) } },
      handle: async ({ params, query }) => {
        const limit = query.limit ?? 100;
        // One more than the page: whether more follow (a client could not tell a full last page from a cut one).
        const found = await registry.listVersions(params.name, { afterSeq: query.after, limit: limit + 1 });
        const versions = found.slice(0, limit);
        const statuses = await registry.versionStatuses(versions);
        return { json: { versions: versions.map((version, index) => versionWithStatusView(version, statuses[index]!)), more: found.length > limit } };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/models/:name/versions',
      operationId: 'pushVersion',
      summary: 'Register a signed artifact whose files were uploaded as blobs',
      tag,
      permission: 'write',
      params: NameParams,
      bodyKind: 'json',
      body: PushVersionBodySchema,
      responses: { 201: { description: 'the registered version', schema: VersionSchema } },
      handle: async ({ params, body, principal }) => {
        const manifest = await checkUploadedArtifact(body.manifest, ctx.blobs, ctx.trustedKeys);
        await registry.checkRegistrable(params.name, manifest);
        await checkStoredModel(manifest, ctx.blobs);
        const version = await registry.register({ model: params.name, manifest, actor: actorOf(principal!) });
        return { status: 201, json: versionView(version) };
      },
    }),
    defineRoute({
      method: 'post',
      path: '/models/:name/versions/check',
      operationId: 'checkPush',
      summary:
        'Before uploading: check a signed manifest (signature, trusted key, manifest.name is this model, at most 1 MiB, version, sizes within --max-blob-bytes) and list the files the server lacks; ' +
        'an artifact registered already is refused (409) unless the server has lost some of its files (registeredAs: upload them to restore it)',
      tag,
      permission: 'write',
      params: NameParams,
      bodyKind: 'json',
      body: PushVersionBodySchema,
      responses: { 200: { description: 'the push can go ahead after uploading these blobs', schema: PushCheckSchema } },
      handle: async ({ params, body }) => ({ json: await checkPush(params.name, body.manifest, ctx) }),
    }),
    defineRoute({
      method: 'get',
      path: '/models/:name/versions/:ref',
      operationId: 'getVersion',
      summary: 'One version, by version, alias (candidate, production) or latest, with its latest rollout status',
      tag,
      permission: 'read',
      params: RefParams,
      responses: { 200: { description: 'the version', schema: VersionDetailSchema } },
      handle: async ({ params }) => {
        const version = await registry.resolve(params.name, params.ref);
        const [status, training] = await Promise.all([registry.versionStatus(version.model, version.version), storedTrainingRecord(version.manifest, ctx.blobs, onDamaged)]);
        return { json: { ...versionWithStatusView(version, status), training } };
      },
    }),
    defineRoute({
      method: 'patch',
      path: '/models/:name/versions/:version',
      operationId: 'patchVersion',
      summary: 'Set or clear the retired flag',
      tag,
      permission: 'write',
      params: VersionParams,
      bodyKind: 'json',
      body: PatchVersionBodySchema,
      responses: { 200: { description: 'the version', schema: VersionSchema } },
      handle: async ({ params, body, principal }) => ({
        json: versionView(await registry.setRetired(params.name, params.version, body.retired, principal!)),
      }),
    }),
    defineRoute({
      method: 'put',
      path: '/models/:name/aliases/:alias',
      operationId: 'setAlias',
      summary: 'Point an alias (candidate, production) at a version',
      tag,
      permission: 'write',
      params: AliasParams,
      bodyKind: 'json',
      body: SetAliasBodySchema,
      responses: { 200: { description: 'the version now holding the alias', schema: VersionSchema } },
      handle: async ({ params, body, principal }) => ({
        json: versionView((await registry.setAlias(params.name, params.alias, body.version, principal!))!),
      }),
    }),
    defineRoute({
      method: 'delete',
      path: '/models/:name/aliases/:alias',
      operationId: 'clearAlias',
      summary: 'Remove an alias',
      tag,
      permission: 'write',
      params: AliasParams,
      responses: { 204: { description: 'removed' } },
      handle: async ({ params, principal, res }) => {
        await registry.setAlias(params.name, params.alias, null, principal!);
        res.status(204).end();
      },
    }),
  ];
}
