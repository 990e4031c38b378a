import { z } from 'zod';
import { ServiceError } from '../../app/service-error.ts';
import type { RolloutService } from '../../rollout/rollout-service.ts';
import { parseRolloutSpec, RolloutSpecInputSchema } from '../../rollout/rollout-spec.ts';
import { DETAIL_DEVICE_STATES, RolloutDetailSchema, RolloutSummarySchema, rolloutDetail, rolloutSummary } from '../../rollout/rollout-views.ts';
import type { Leadership } from '../../rollout/leader-election.ts';
import { reasonSchema } from '../../rollout/operator-text.ts';
import { PausedSinceSchema } from '../../rollout/paused-since.ts';
import { MAX_LIST_OFFSET, MAX_LIST_PAGE } from '../../app/list-page.ts';
import { rolloutPage } from '../../rollout/rollout-page.ts';
import { MAX_SPEC_BYTES } from '../../rollout/spec-document.ts';
import { readTextBody } from '../read-text-body.ts';
import { bodyTooLarge } from '../body-size-limit.ts';
import { openEventStream } from '../server-sent-events.ts';
import type { StalledStreams } from '../../app/stalled-streams.ts';
import { queryInteger } from '../api-schemas.ts';
import { defineRoute, type RouteSpec } from '../route-spec.ts';
import { ROLLOUT_ID_PATTERN } from '../../../shared/util/rollout-id.ts';
import { ModelNameSchema } from '../../registry/names.ts';

export const RolloutIdSchema = z.string().regex(ROLLOUT_ID_PATTERN, 'must be a rollout id');
const RolloutParams = z.strictObject({ id: RolloutIdSchema });
const SPEC_MEDIA_TYPES = ['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'];

const CommandQuery = z.strictObject({ reason: reasonSchema(1).optional() });
const ResumeQuery = z.strictObject({
  /** The pause (its `pause.since`) the resume is for: refused (409) once the rollout is no longer in it. */
  pausedSince: PausedSinceSchema.optional(),
});
const PromoteQuery = z.strictObject({
  step: z.enum(['true', 'false']).optional(),
  /** The step index (as `stepIndex` shows it) the promotion is from: refused (409) once the rollout has moved past it. */
  fromStepIndex: queryInteger(0, 999_999).optional(),
});

const RolloutListQuery = z
  .strictObject({
    model: ModelNameSchema.optional(),
    limit: queryInteger(1, MAX_LIST_PAGE).optional(),
    offset: queryInteger(0, MAX_LIST_OFFSET).optional(),
    containing: RolloutIdSchema.optional(),
  })
  .refine((query) => query.offset === undefined || query.containing === undefined, { path: ['containing'], message: 'give ?offset or ?containing, not both' });

const StartedRolloutSchema = RolloutSummarySchema.extend({ warnings: z.array(z.string()) });

const LeaderSchema = z.strictObject({
  engine: z.enum(['sqlite', 'postgres']),
  instance: z.string(),
  isLeader: z.boolean(),
  leaderSince: z.string().nullable(),
  leader: z.string().nullable(),
});

const tag = 'rollouts';

export function rolloutsRoutes(service: RolloutService, leadership: Leadership, maxBodyBytes: number, stalledStreams: StalledStreams): RouteSpec[] {
  const command = (name: 'pause' | 'resume' | 'abort' | 'rollback', summary: string) =>
    defineRoute({
      method: 'post',
      path: `/rollouts/:id/${name}`,
      operationId: `${name}Rollout`,
      summary,
      tag,
      permission: 'write',
      params: RolloutParams,
      query: name === 'abort' || name === 'rollback' ? CommandQuery : name === 'resume' ? ResumeQuery : z.strictObject({}),
      responses:
        name === 'rollback'
          ? { 200: { description: 'the rollout after the rollback, with `warnings`: a version it restores that a rollout failed or rolled back (they never block it; also in its decision log)', schema: StartedRolloutSchema } }
          : { 200: { description: 'the rollout after the command', schema: RolloutSummarySchema } },
      handle: async ({ params, query, principal }) => {
        const { reason, pausedSince } = query as { reason?: string; pausedSince?: number };
        const after = await service.command(params.id, name, principal!, { reason, ...(pausedSince === undefined ? {} : { pausedSince }) });
        return { json: name === 'rollback' ? { ...rolloutSummary(after), warnings: after.warnings } : rolloutSummary(after) };
      },
    });
  return [
    defineRoute({
      method: 'post',
      path: '/rollouts',
      operationId: 'startRollout',
      summary: 'Start a rollout: the body is the rollout spec as JSON (application/json) or YAML (application/yaml); see docs/rollout-spec.md',
      tag,
      permission: 'write',
      bodyKind: 'binary',
      bodyMediaTypes: SPEC_MEDIA_TYPES,
      bodyJson: RolloutSpecInputSchema,
      responses: { 201: { description: 'the started rollout, with `warnings` (no analysis step, conditions that decide nothing, tolerances that cannot fail, a candidate that already failed or was rolled back; they never block the start)', schema: StartedRolloutSchema } },
      handle: async ({ req, principal }) => {
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (!SPEC_MEDIA_TYPES.includes(type)) throw new ServiceError('unsupported_media_type', `body: send the spec with Content-Type ${SPEC_MEDIA_TYPES.slice(0, -1).join(', ')} or ${SPEC_MEDIA_TYPES.at(-1)} (got ${type || 'none'})`);
        // A spec over MAX_SPEC_BYTES is refused as it arrives (413), not read whole (up to --max-body-bytes) to be refused after.
        const limit = Math.min(maxBodyBytes, MAX_SPEC_BYTES);
        const tooLarge = () =>
          limit === maxBodyBytes ? bodyTooLarge(limit) : new ServiceError('payload_too_large', `body: larger than ${MAX_SPEC_BYTES} bytes, the most a rollout spec may be`);
        const spec = parseRolloutSpec(await readTextBody(req, limit, tooLarge), 'body');
        const started = await service.start(spec, principal!);
        return { status: 201, json: { ...rolloutSummary(started), warnings: started.warnings } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/rollouts',
      operationId: 'listRollouts',
      summary:
        'Rollouts, newest first: a page of ?limit (1-1000, default 100) after skipping the ?offset newest (up to 1,000,000,000), ' +
        'or the page that holds rollout ?containing (404 when there is no such rollout of ?model); `offset` says where the page starts, ' +
        '`total` counts them all (of ?model, when given), `more` says whether older ones follow the page',
      tag,
      permission: 'read',
      query: RolloutListQuery,
      responses: {
        200: { description: 'rollouts', schema: z.strictObject({ rollouts: z.array(RolloutSummarySchema), more: z.boolean(), total: z.number().int().min(0), offset: z.number().int().min(0) }) },
        404: { description: 'no rollout ?containing (of ?model)' },
      },
      handle: async ({ query }) => {
        const { items: rollouts, more, total, offset } = await rolloutPage(service, query);
        return { json: { rollouts, more, total, offset } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/rollouts/leader',
      operationId: 'getRolloutLeader',
      summary: 'Which server drives rollouts (PostgreSQL: the advisory-lock holder; SQLite: this one)',
      tag,
      permission: 'read',
      responses: { 200: { description: 'leadership', schema: LeaderSchema } },
      handle: async () => ({ json: await leadership.status() }),
    }),
    defineRoute({
      method: 'get',
      path: '/rollouts/:id',
      operationId: 'getRollout',
      summary:
        'One rollout: state, per-step progress, device states (up to ?devices, default 1000: refused, unreachable, retrying and pending first), the decision log (queries, values, thresholds, verdicts) and analysis values over time',
      tag,
      permission: 'read',
      params: RolloutParams,
      query: z.strictObject({ devices: queryInteger(0, 1_000_000).default(DETAIL_DEVICE_STATES) }),
      responses: { 200: { description: 'the rollout', schema: RolloutDetailSchema } },
      handle: async ({ params, query }) => {
        const { record, decisions, rollbackRefused, rollbackWarnings } = await service.get(params.id);
        return { json: rolloutDetail(record, decisions, query.devices, rollbackRefused, rollbackWarnings) };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/rollouts/:id/events',
      operationId: 'watchRollout',
      summary: 'Server-sent events: `decision` (each decision-log entry, history first) and `state` (the rollout summary on every change)',
      tag,
      permission: 'read',
      params: RolloutParams,
      responses: { 200: { description: 'an event stream', contentType: 'text/event-stream' } },
      handle: async ({ req, res, params }) => {
        await service.assertExists(params.id);
        const stream = openEventStream(req, res, { policy: stalledStreams, route: 'GET /api/rollouts/:id/events' });
        const unsubscribe = await service.watch(
          params.id,
          (event) => {
            if (event.type === 'decision') stream.send('decision', { ...event.decision, at: new Date(event.decision.at).toISOString() });
            else stream.send('state', rolloutSummary(event.record));
          },
          () => stream.end(),
        );
        stream.onClose(unsubscribe);
      },
    }),
    command('pause', 'Pause the rollout where it is (operator)'),
    command(
      'resume',
      'Resume a paused rollout (operator). `?pausedSince=` (the `pause.since` the operator saw) makes it refused with 409 once the rollout is no longer in that pause, so two resumes at once have one effect (a hold lifted, not the timed pause under it ended too)',
    ),
    defineRoute({
      method: 'post',
      path: '/rollouts/:id/promote',
      operationId: 'promoteRollout',
      summary:
        'Promote: straight to 100% skipping the remaining steps and analyses, or `?step=true` to skip only the current step (operator). ' +
        '`?fromStepIndex=N` (the `stepIndex` the operator saw) makes it refused with 409 once the rollout is no longer at that step, so a repeated or concurrent `?step=true` skips one step, not two',
      tag,
      permission: 'write',
      params: RolloutParams,
      query: PromoteQuery,
      responses: { 200: { description: 'the rollout after the command', schema: RolloutSummarySchema } },
      handle: async ({ params, query, principal }) => ({ json: rolloutSummary(await service.command(params.id, 'promote', principal!, { full: query.step !== 'true', ...(query.fromStepIndex === undefined ? {} : { fromStep: query.fromStepIndex }) })) }),
    }),
    command('abort', 'Abort: stop, and revert every device the rollout touched (operator; optional ?reason=)'),
    command('rollback', 'Roll back, even after full promotion: every device back to its baseline, previous production restored, and devices given the promoted version outside the rollout sent it too (operator; optional ?reason=)'),
  ];
}
