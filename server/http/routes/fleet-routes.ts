import { z } from 'zod';
import { AgentConfigSchema, DeviceBrokerUrlSchema } from '../../../shared/protocol/agent-config.ts';
import { DeviceIdSchema } from '../../../shared/protocol/payloads.ts';
import { ServerUrlSchema } from '../../../shared/protocol/server-url.ts';
import type { ServerContext } from '../../app/server-context.ts';
import { actorOf } from '../../auth/principal.ts';
import { AssignRequestSchema, type AssignmentService } from '../../fleet/assignment-service.ts';
import type { DeviceService } from '../../fleet/device-service.ts';
import { DeviceLabelsSchema } from '../../fleet/device-labels.ts';
import { DeviceViewSchema, deviceView } from '../../fleet/device-view.ts';
import { queryInteger } from '../api-schemas.ts';
import { defineRoute, type RouteSpec } from '../route-spec.ts';

export const EnrollBodySchema = z.strictObject({
  id: DeviceIdSchema,
  labels: DeviceLabelsSchema.default({}),
  /** Written into the agent config instead of the server's public broker URL. */
  brokerUrl: DeviceBrokerUrlSchema.optional(),
  /** Written into the agent config instead of the server's public URL. */
  serverUrl: ServerUrlSchema.optional(),
});

const DeviceParams = z.strictObject({ id: DeviceIdSchema });

export const DEFAULT_DEVICE_PAGE = 1000;
export const MAX_DEVICE_PAGE = 5000;

const AssignResultSchema = z.strictObject({
  assignmentId: z.string(),
  model: z.string(),
  version: z.string(),
  artifactId: z.string(),
  role: z.enum(['candidate', 'active']),
  url: z.string(),
  devices: z.array(z.strictObject({ deviceId: z.string(), online: z.boolean(), state: z.literal('published') })),
  /** A version a rollout failed or rolled back, assigned anyway: said here. */
  warnings: z.array(z.string()),
});

/** DELETE /api/devices/:id when the broker could not be updated (202): the device is revoked, the broker not yet. */
export const RevokePendingSchema = z.strictObject({
  deviceId: z.string(),
  revoked: z.literal(true),
  brokerUpdated: z.literal(false),
  /** Why the broker could not be updated (e.g. Mosquitto's files cannot be written). */
  brokerProblem: z.string(),
  /** The server retries in the background (fleetprune_fleet_broker_credentials_stale is 1 until it succeeds). */
  retrying: z.literal(true),
  /** One line for people. */
  warning: z.string(),
});

/**
 * POST /api/devices when the broker could not be updated: the device is enrolled (201 with its
 * config) but cannot connect until the server's background retries update the broker.
 */
export const ENROLL_WARNING_HEADERS = {
  brokerUpdated: 'Fleetprune-Broker-Updated',
  brokerProblem: 'Fleetprune-Broker-Problem',
  warning: 'Fleetprune-Warning',
} as const;

/** A header value: printable ASCII on one line (a path in an error message may hold anything else). */
function headerText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

/** A page of GET /api/devices: at most 5,000 devices (default 1,000) after the id `after`. */
export const DeviceListQuerySchema = z.strictObject({
  limit: queryInteger(1, MAX_DEVICE_PAGE).default(DEFAULT_DEVICE_PAGE),
  after: DeviceIdSchema.optional(),
});

/** Devices (enroll, list, revoke) and the assignment primitive. */
export function fleetRoutes(_ctx: ServerContext, devices: DeviceService, assignments: AssignmentService): RouteSpec[] {
  return [
    defineRoute({
      method: 'post',
      path: '/devices',
      operationId: 'enrollDevice',
      summary: 'Enroll a device; the response is its agent config, with secrets shown only this once',
      tag: 'devices',
      permission: 'write',
      bodyKind: 'json',
      body: EnrollBodySchema,
      responses: {
        201: {
          description:
            'the agent config file. When the broker could not be updated (Mosquitto\'s files cannot be written; the server keeps retrying and the device cannot connect until then), ' +
            `still 201 with the config, and the headers ${ENROLL_WARNING_HEADERS.brokerUpdated}: false, ${ENROLL_WARNING_HEADERS.brokerProblem} (why) and ${ENROLL_WARNING_HEADERS.warning} (one line for people)`,
          schema: AgentConfigSchema,
          headers: {
            [ENROLL_WARNING_HEADERS.brokerUpdated]: 'false when the broker could not be updated yet (absent otherwise)',
            [ENROLL_WARNING_HEADERS.brokerProblem]: 'why the broker could not be updated (absent when it was)',
            [ENROLL_WARNING_HEADERS.warning]: 'the device is enrolled but cannot connect until the broker is updated; the server keeps retrying (absent when the broker was updated)',
          },
        },
      },
      handle: async ({ body, principal, res }) => {
        const result = await devices.enrollDevice(body, actorOf(principal!));
        // The body stays exactly the agent config file (AgentConfigSchema is strict, and clients
        // save the body as the device's agent.json: the only copy of its secrets), so a broker that
        // could not be updated is said in headers, not in added body fields (unlike revocation's 202).
        if (!result.brokerUpdated) {
          res.setHeader(ENROLL_WARNING_HEADERS.brokerUpdated, 'false');
          res.setHeader(ENROLL_WARNING_HEADERS.brokerProblem, headerText(result.brokerProblem));
          res.setHeader(ENROLL_WARNING_HEADERS.warning, headerText(result.warning));
        }
        return { status: 201, json: result.config };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/devices',
      operationId: 'listDevices',
      summary: 'Enrolled devices by id, a page at a time (limit, after = the previous page\'s next): labels, online, last seen, model slots',
      tag: 'devices',
      permission: 'read',
      query: DeviceListQuerySchema,
      responses: {
        200: {
          description:
            'one page of devices; next is null on the last page; counts are over every device (enrolled and online: the live ones; revoked: those the list also holds); broker.connected is false while this server\'s broker connection is down ' +
            '(each device\'s online is then as it was when the connection went), null on a standby (which does not connect)',
          schema: z.strictObject({
            devices: z.array(DeviceViewSchema),
            next: z.string().nullable(),
            counts: z.strictObject({
              enrolled: z.number().describe('live (not revoked) devices'),
              online: z.number().describe('live devices connected now'),
              revoked: z.number().describe('revoked devices, which the list pages through too (marked by revokedAt)'),
            }),
            broker: z.strictObject({ connected: z.boolean().nullable() }),
          }),
        },
      },
      handle: async ({ query }) => {
        const page = await devices.page({ after: query.after, limit: query.limit });
        return { json: { devices: page.devices.map((device) => deviceView(device)), next: page.next, counts: await devices.counts(), broker: { connected: devices.brokerConnected() } } };
      },
    }),
    defineRoute({
      method: 'get',
      path: '/devices/:id',
      operationId: 'getDevice',
      summary: 'One device, with its latest refused answer (lastRefusal)',
      tag: 'devices',
      permission: 'read',
      params: DeviceParams,
      responses: { 200: { description: 'the device', schema: DeviceViewSchema } },
      handle: async ({ params }) => ({ json: deviceView(await devices.get(params.id), await devices.lastRefusal(params.id)) }),
    }),
    defineRoute({
      method: 'delete',
      path: '/devices/:id',
      operationId: 'revokeDevice',
      summary: 'Revoke a device: the broker refuses it and its download token stops working',
      tag: 'devices',
      permission: 'write',
      params: DeviceParams,
      responses: {
        204: { description: 'revoked, at the broker too' },
        202: { description: 'revoked (its token no longer works), but the broker could not be updated yet: the device may stay connected; the server keeps retrying', schema: RevokePendingSchema },
      },
      handle: async ({ params, principal, res }) => {
        const result = await devices.revoke(params.id, actorOf(principal!));
        if (!result.brokerUpdated) {
          const { deviceId, brokerProblem, warning } = result;
          return { status: 202, json: { deviceId, revoked: true, brokerUpdated: false, brokerProblem, retrying: true, warning } };
        }
        res.status(204).end();
      },
    }),
    defineRoute({
      method: 'post',
      path: '/assignments',
      operationId: 'createAssignment',
      summary: 'Assign a model version (candidate or active) to the devices a selector or id list names',
      tag: 'devices',
      permission: 'write',
      bodyKind: 'json',
      body: AssignRequestSchema,
      responses: { 201: { description: 'the published assignment, per device', schema: AssignResultSchema } },
      handle: async ({ body, principal }) => ({ status: 201, json: await assignments.assign(body, actorOf(principal!)) }),
    }),
  ];
}
