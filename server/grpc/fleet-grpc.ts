import type { ServerContext } from '../app/server-context.ts';
import type { GrpcServiceBinding } from '../app/server-module.ts';
import { actorOf } from '../auth/principal.ts';
import { ServiceError } from '../app/service-error.ts';
import { AssignRequestSchema, type AssignmentService } from '../fleet/assignment-service.ts';
import type { DeviceService } from '../fleet/device-service.ts';
import type { DeviceRecord } from '../store/repositories/devices-repository.ts';
import { DEFAULT_DEVICE_PAGE, DeviceListQuerySchema, EnrollBodySchema, MAX_DEVICE_PAGE } from '../http/routes/fleet-routes.ts';
import { loadFleetpruneProto } from '../../shared/proto/load-proto.ts';
import { DeviceIdSchema } from '../../shared/protocol/payloads.ts';
import { checkField, checkRequest, pageLimit } from './check-field.ts';
import { GrpcHandlers } from './grpc-call.ts';
import { parseJsonField } from './json-field.ts';
import { LabelSelectorSchema, isEmptySelector } from '../rollout/label-selector.ts';


function deviceMessage(device: DeviceRecord) {
  const retained = device.retainedAssignment;
  return {
    id: device.id,
    labels: device.labels,
    online: device.online,
    last_seen: device.lastSeen ?? '',
    ...(device.active ? { active: device.active } : {}),
    ...(device.candidate ? { candidate: device.candidate } : {}),
    ...(device.previous ? { previous: device.previous } : {}),
    enrolled_at: device.enrolledAt,
    revoked_at: device.revokedAt ?? '',
    assignment_id: retained?.id ?? '',
    assignment_version: retained?.version ?? '',
    assignment_role: retained?.role ?? '',
    enrolled_by: device.enrolledBy,
    assignment_model: retained?.model ?? '',
    assignment_issued_at: retained?.issuedAt ?? '',
  };
}

/** The gRPC face of devices and assignments (the same services as the REST routes). */
export function fleetGrpcServices(ctx: ServerContext, devices: DeviceService, assignments: AssignmentService): Record<'Devices' | 'Assignments', GrpcServiceBinding> {
  const proto = loadFleetpruneProto();
  const deps = { tokens: ctx.tokens, metrics: ctx.metrics, log: ctx.log };
  const deviceHandlers = new GrpcHandlers(deps, 'Devices');
  const assignmentHandlers = new GrpcHandlers(deps, 'Assignments');
  return {
    Devices: {
      service: proto.Devices.service,
      implementation: {
        EnrollDevice: deviceHandlers.unary('EnrollDevice', 'write', async (req: { id: string; labels: Record<string, string>; broker_url: string; server_url: string }, principal) => {
          const request = checkRequest(
            EnrollBodySchema,
            { id: req.id, labels: req.labels, ...(req.broker_url ? { brokerUrl: req.broker_url } : {}), ...(req.server_url ? { serverUrl: req.server_url } : {}) },
            { brokerUrl: 'broker_url', serverUrl: 'server_url' },
          );
          const result = await devices.enrollDevice(request, actorOf(principal));
          return { agent_config_json: JSON.stringify(result.config, null, 2), broker_warning: result.brokerUpdated ? '' : result.warning };
        }),
        ListDevices: deviceHandlers.unary('ListDevices', 'read', async (req: { limit: number; after: string }) => {
          // Each field on its own, named as the proto names it (`limit: …`), as the other list calls name theirs.
          // 0 is proto3's unset: the default page, which the refusal says.
          checkField(pageLimit(MAX_DEVICE_PAGE, DEFAULT_DEVICE_PAGE), req.limit, 'limit');
          const limit = checkField(DeviceListQuerySchema.shape.limit, req.limit ? String(req.limit) : undefined, 'limit');
          const after = checkField(DeviceListQuerySchema.shape.after, req.after || undefined, 'after');
          const page = await devices.page({ after, limit });
          const connected = devices.brokerConnected();
          return { devices: page.devices.map(deviceMessage), next: page.next ?? '', broker: connected === null ? '' : connected ? 'connected' : 'disconnected' };
        }),
        GetDevice: deviceHandlers.unary('GetDevice', 'read', async (req: { id: string }) => {
          const id = checkField(DeviceIdSchema, req.id, 'id');
          const device = await devices.get(id);
          const refusal = await devices.lastRefusal(id);
          return {
            device: deviceMessage(device),
            ...(refusal
              ? { last_refusal: { assignment_id: refusal.assignmentId, outcome: refusal.outcome, role: refusal.role, model: refusal.model, version: refusal.version, reason: refusal.reason ?? '', failed_role: refusal.failedRole ?? '', at: refusal.at } }
              : {}),
          };
        }),
        RevokeDevice: deviceHandlers.unary('RevokeDevice', 'write', async (req: { id: string }, principal) => {
          const result = await devices.revoke(checkField(DeviceIdSchema, req.id, 'id'), actorOf(principal));
          return { broker_warning: result.brokerUpdated ? '' : result.warning };
        }),
      },
    },
    Assignments: {
      service: proto.Assignments.service,
      implementation: {
        CreateAssignment: assignmentHandlers.unary(
          'CreateAssignment',
          'write',
          async (req: { model: string; version: string; role: string; selector_json: string; device_ids: string[]; all_devices: boolean }, principal) => {
            const selector = parseJsonField(req.selector_json, 'selector_json');
            // Said in the proto's names here: the schema's own refusal names the REST body's fields.
            if ([selector !== undefined, req.device_ids.length > 0, req.all_devices].filter(Boolean).length !== 1) {
              throw new ServiceError('bad_request', 'give exactly one of selector_json, device_ids and all_devices');
            }
            const parsedSelector = selector === undefined ? undefined : LabelSelectorSchema.safeParse(selector);
            if (parsedSelector?.success && isEmptySelector(parsedSelector.data)) {
              throw new ServiceError('bad_request', 'selector_json: empty: it would match every device; set all_devices to assign to the whole fleet');
            }
            const request = checkRequest(
              AssignRequestSchema,
              {
                model: req.model,
                version: req.version,
                role: req.role,
                ...(selector !== undefined ? { selector } : {}),
                ...(req.device_ids.length > 0 ? { deviceIds: req.device_ids } : {}),
                ...(req.all_devices ? { allDevices: true } : {}),
              },
              { selector: 'selector_json', deviceIds: 'device_ids', allDevices: 'all_devices' },
            );
            const result = await assignments.assign(request, actorOf(principal));
            return {
              assignment_id: result.assignmentId,
              model: result.model,
              version: result.version,
              artifact_id: result.artifactId,
              role: result.role,
              url: result.url,
              devices: result.devices.map((device) => ({ device_id: device.deviceId, online: device.online, state: device.state })),
              warnings: result.warnings,
            };
          },
        ),
      },
    },
  };
}

