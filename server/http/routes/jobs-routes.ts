import { z } from 'zod';
import type { ServerContext } from '../../app/server-context.ts';
import { MAX_LIST_OFFSET } from '../../app/list-page.ts';
import { jobPage } from '../../jobs/job-page.ts';
import { JobIdSchema } from '../../jobs/job-id.ts';
import { givenKeys, PruneJobRequestSchema } from '../../jobs/prune-job-request.ts';
import { JobSchema, PageQuerySchema, queryInteger } from '../api-schemas.ts';
import { jobView } from '../api-views.ts';
import { openEventStream } from '../server-sent-events.ts';
import { defineRoute, type RouteSpec } from '../route-spec.ts';

const JobParams = z.strictObject({ id: JobIdSchema });
/** ?limit=1-1000 (default 100) and ?offset (the newest skipped), as gRPC ListJobs and `jobs list --limit/--offset` take them. */
const JobListQuery = PageQuerySchema.pick({ limit: true }).extend({ offset: queryInteger(0, MAX_LIST_OFFSET).optional() });

const tag = 'jobs';

export function jobsRoutes(ctx: ServerContext): RouteSpec[] {
  const { jobs } = ctx;
  return [
    defineRoute({
      method: 'post',
      path: '/jobs/prune',
      operationId: 'startPruneJob',
      summary: 'Train and prune (ODF2NNA) in a worker thread; the general and pruned models are registered when it succeeds',
      tag,
      permission: 'write',
      bodyKind: 'json',
      body: PruneJobRequestSchema,
      responses: { 202: { description: 'the queued job', schema: JobSchema } },
      // The options as sent (the validated body holds the defaults too): one the data's task ignores is refused.
      handle: async ({ req, body, principal }) => ({ status: 202, json: jobView(await jobs.startPrune(body, principal!, undefined, givenKeys(req.body?.options))) }),
    }),
    defineRoute({
      method: 'get',
      path: '/jobs',
      operationId: 'listJobs',
      summary:
        'Jobs, newest first: a page of ?limit (1-1000, default 100) after skipping the ?offset newest (up to 1,000,000,000); ' +
        '`total` counts every job, `more` says whether older ones follow the page',
      tag,
      permission: 'read',
      query: JobListQuery,
      responses: { 200: { description: 'jobs', schema: z.strictObject({ jobs: z.array(JobSchema), more: z.boolean(), total: z.number().int().min(0) }) } },
      handle: async ({ query }) => {
        const { items, more, total } = await jobPage(jobs, query);
        return { json: { jobs: items.map(jobView), more, total } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/jobs/:id',
      operationId: 'getJob',
      summary: 'One job',
      tag,
      permission: 'read',
      params: JobParams,
      responses: { 200: { description: 'the job', schema: JobSchema } },
      handle: async ({ params }) => ({ json: jobView(await jobs.get(params.id)) }),
    }),
    defineRoute({
      method: 'post',
      path: '/jobs/:id/cancel',
      operationId: 'cancelJob',
      summary: 'Cancel a queued or running job: it ends `cancelled` (its error "cancelled by …") and registers nothing; 409 when it already finished or is finishing (registering its models)',
      tag,
      permission: 'write',
      params: JobParams,
      responses: { 200: { description: 'the job, finished', schema: JobSchema } },
      handle: async ({ params, principal }) => ({ json: jobView(await jobs.cancel(params.id, principal!)) }),
    }),
    defineRoute({
      method: 'get',
      path: '/jobs/:id/events',
      operationId: 'watchJob',
      summary: 'Server-sent events: `state` (the job) and `progress` ({phase, done, total, detail}) until the job ends, whichever server runs it',
      tag,
      permission: 'read',
      params: JobParams,
      responses: { 200: { description: 'an event stream', contentType: 'text/event-stream' } },
      handle: async ({ req, res, params }) => {
        await jobs.get(params.id);
        const stream = openEventStream(req, res, { policy: ctx.stalledStreams, route: 'GET /api/jobs/:id/events' });
        const unsubscribe = await jobs.watch(
          params.id,
          (event) => stream.send(event.type, event.type === 'state' ? jobView(event.job) : event.progress),
          () => stream.end(),
        );
        stream.onClose(unsubscribe);
      },
    }),
  ];
}
