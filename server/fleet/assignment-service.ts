import type { VersionRecord } from '../store/repositories/models-repository.ts';
import { z } from 'zod';
import { newMessageId } from '../../shared/protocol/message-id.ts';
import { Mutex } from '../../shared/util/mutex.ts';
import { DeviceIdSchema, RoleSchema } from '../../shared/protocol/payloads.ts';
import { ServiceError } from '../app/service-error.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import { ModelNameSchema, VersionRefSchema } from '../registry/names.ts';
import { LabelSelectorSchema, describeSelector, isEmptySelector, selectorMatches } from '../rollout/label-selector.ts';
import type { DeviceRecord } from '../store/repositories/devices-repository.ts';
import type { AssignmentPublisher } from './assignment-publisher.ts';
import type { FleetStore } from './fleet-store.ts';
import { OPEN_FLEET_GATE, type FleetGate } from './fleet-gate.ts';

/**
 * `POST /api/assignments`: a version, a role, and exactly one of a label selector, device ids and
 * `allDevices: true`. An empty selector is refused: it would match the whole fleet, which a
 * client that lost its labels on the way must not do by accident.
 */
export const AssignRequestSchema = z
  .strictObject({
    model: ModelNameSchema,
    /** A version, an alias (candidate, production) or `latest`. */
    version: VersionRefSchema,
    role: RoleSchema,
    selector: LabelSelectorSchema.optional(),
    deviceIds: z
      .array(DeviceIdSchema)
      .min(1, 'must name at least one device')
      .max(10_000)
      .refine((ids) => new Set(ids).size === ids.length, 'must not repeat a device')
      .optional(),
    allDevices: z.literal(true, { error: 'must be true (to name devices, give selector or deviceIds instead)' }).optional(),
  })
  .superRefine((request, ctx) => {
    if ([request.selector, request.deviceIds, request.allDevices].filter((given) => given !== undefined).length !== 1) {
      ctx.addIssue({ code: 'custom', path: ['selector'], message: 'give exactly one of selector, deviceIds and allDevices' });
    } else if (request.selector !== undefined && !ctx.issues.some((issue) => issue.path?.[0] === 'selector') && isEmptySelector(request.selector)) {
      // Only a selector that is valid is empty: one with a misspelt key (`matchLabel`, dropped from
      // the value seen here) is refused for that alone.
      ctx.addIssue({ code: 'custom', path: ['selector'], message: 'empty: it would match every device; send "allDevices": true to assign to the whole fleet' });
    }
  });
export type AssignRequest = z.infer<typeof AssignRequestSchema>;

export interface AssignResult {
  assignmentId: string;
  model: string;
  version: string;
  artifactId: string;
  role: 'candidate' | 'active';
  url: string;
  devices: { deviceId: string; online: boolean; state: 'published' }[];
  /** What the assignment ships that a rollout marked bad (failed, rolled back): said, never refused. */
  warnings: string[];
}

/** A version's newest status in the registry (the one a rollout or an alias move gave it); null: none. */
export type AssignedVersionStatus = (model: string, version: string) => Promise<{ status: string; reason: string; at: string } | null>;

/**
 * The assignment primitive behind REST, gRPC and `fleetprune assign`: resolves the registry
 * version, resolves the target devices (all of them must be live), then records and publishes.
 * Every refusal happens before anything is written.
 */
export class AssignmentService {
  readonly #gate: FleetGate;
  readonly #turns: Mutex;

  /**
   * `gate` refuses assignments on a standby server (default: always allowed). `rolloutOf` names
   * the rollout under way that targets one of the devices: a direct assignment would be
   * overwritten by its next step, or undone by its rollback, so it is refused.
   */
  constructor(
    private readonly options: {
      fleet: FleetStore;
      registry: RegistryService;
      publisher: AssignmentPublisher;
      gate?: FleetGate;
      rolloutOf?: (deviceIds: readonly string[]) => Promise<{ deviceId: string; rollout: string } | null>;
      /** The version's newest status: one a rollout failed or rolled back is assigned with a warning. */
      statusOf?: AssignedVersionStatus;
      /** Taken from the check for rollouts to the record: rollout starts take it too (ServerContext.fleetChanges). */
      turns?: Mutex;
      /** Why devices could not download the version (its model.onnx lost from the blob store: lostModelFile), or null. */
      lostFile?: (version: VersionRecord) => Promise<string | null>;
    },
  ) {
    this.#gate = options.gate ?? OPEN_FLEET_GATE;
    this.#turns = options.turns ?? new Mutex();
  }

  async assign(request: AssignRequest, actor: string): Promise<AssignResult> {
    await this.#gate.assertActive();
    const version = await this.options.registry.resolve(request.model, request.version);
    if (version.retired) throw new ServiceError('conflict', `${version.model}@${version.version} is retired`);
    const devices = await this.#targets(request);
    for (const device of devices) {
      const pinned = this.options.publisher.pinProblem(device);
      if (pinned) throw new ServiceError('conflict', `device ${device.id} ${pinned}`);
    }
    // A version no trusted key vouches for any more (its signer's key left --trusted-key) would be
    // refused by a device that downloads it; a device that holds it already (an operator's rollback
    // to its previous version) switches to it from its own store, which kept its endorsement.
    const signerProblem = this.options.publisher.signerProblem(version);
    if (signerProblem) {
      const lacking = devices.filter((device) => !holdsArtifact(device, version.artifactId));
      if (lacking.length > 0) {
        const which = lacking.length === 1 ? `device ${lacking[0]!.id} does not hold it` : `devices ${lacking[0]!.id} and ${lacking.length - 1} more do not hold it`;
        throw new ServiceError('conflict', `${version.model}@${version.version} ${signerProblem}; ${which}, and a device refuses to download it (one that holds it, as its active, previous or candidate version, switches to it from its own store)`);
      }
    }
    // A device that holds the version switches to it from its own store (an operator's rollback);
    // one that does not would fail to download it.
    const lost = await this.options.lostFile?.(version);
    if (lost) {
      const lacking = devices.filter((device) => !holdsArtifact(device, version.artifactId));
      if (lacking.length > 0) {
        const which = lacking.length === 1 ? `device ${lacking[0]!.id} does not hold it` : `devices ${lacking[0]!.id} and ${lacking.length - 1} more do not hold it`;
        throw new ServiceError('conflict', `${lost}; ${which}, and would fail to download it`);
      }
    }
    if (request.role === 'candidate') {
      // A candidate is benchmarked side by side with the active model it would replace: one of another model has none.
      const others = devices.filter((device) => device.active !== null && device.active.model !== version.model);
      if (others.length > 0) {
        const first = others[0]!;
        const more = others.length === 1 ? '' : ` (and ${others.length - 1} more device${others.length === 2 ? '' : 's'} serving another model)`;
        const untaken = await this.#untakenActive(first);
        const switching = untaken && untaken.model !== first.active!.model ? untaken : null;
        const advice =
          switching?.model === version.model
            ? `its switch to ${switching.model}@${switching.version} (assignment ${switching.id}) is not taken yet: assign the candidate once the device runs ${version.model}`
            : `assign ${version.model} with role active to switch the device to it`;
        throw new ServiceError('conflict', `device ${first.id} serves ${first.active!.model}, not ${version.model}${more}: a candidate is benchmarked against the active model it would replace; ${advice}`);
      }
    }
    // A switch to another model the device has not taken yet (offline) would be replaced unseen.
    // An active assignment the device has not taken yet (offline) would be replaced unseen: by a
    // candidate (the device keeps what it runs, or none), or by another model's active one.
    const replaced: { device: DeviceRecord; switching: { id: string; model: string; version: string } }[] = [];
    for (const device of devices) {
      const switching = await this.#untakenActive(device);
      if (switching && (request.role === 'candidate' || switching.model !== version.model)) replaced.push({ device, switching });
    }
    const assignmentId = newMessageId();
    const deviceIds = devices.map((device) => device.id);
    // A rollout started between the check and the record would read the devices' old baselines.
    // The send comes after the turn: a broker that stalls must not hold up a rollback.
    const recorded = await this.#turns.run(async () => {
      const held = await this.options.rolloutOf?.(deviceIds);
      if (held) throw new ServiceError('conflict', `device ${held.deviceId} is a target of ${held.rollout}; finish, abort or roll it back first (it would overwrite or undo this assignment)`);
      // Retired meanwhile (checked above, before the devices were read): refused in the record's transaction, nothing recorded.
      return this.options.publisher.record({ id: assignmentId, version, role: request.role, deviceIds, actor, action: 'assignment.create', refuseRetired: true, restoring: signerProblem !== null });
    });
    // What the devices' retained topics hold by now: this assignment, or a newer one recorded meanwhile.
    await this.options.publisher.sendRetained(deviceIds);
    // As a rollout's start says of a candidate it ships again: an operator may mean it, but not without a word.
    const status = await this.options.statusOf?.(version.model, version.version);
    const warnings = [
      ...(status?.status === 'failed' || status?.status === 'rolled-back' ? [`${version.model}@${version.version} is ${status.status} since ${status.at} (${status.reason}); this assignment ships it again`] : []),
      ...(replaced.length === 0
        ? []
        : replaced.length === 1
          ? [`this replaces device ${replaced[0]!.device.id}'s active assignment of ${replaced[0]!.switching.model}@${replaced[0]!.switching.version} (assignment ${replaced[0]!.switching.id}), which it has not taken yet: ${request.role === 'active' ? `it switches to ${version.model} instead` : `it stays on ${runs(replaced[0]!.device)}`}`]
          : [`this replaces the active assignments ${replaced.length} devices have not taken yet (${replaced[0]!.device.id}'s of ${replaced[0]!.switching.model}@${replaced[0]!.switching.version}, …): ${request.role === 'active' ? `they switch to ${version.model} instead` : 'they stay on what they run'}`]),
    ];
    return {
      assignmentId,
      model: version.model,
      version: version.version,
      artifactId: version.artifactId,
      role: request.role,
      url: [...recorded.values()][0]!.url,
      devices: devices.map((device) => ({ deviceId: device.id, online: device.online, state: 'published' as const })),
      warnings,
    };
  }

  /**
   * The device's retained active assignment, when it has neither taken nor refused it yet (offline
   * since, or still installing): what it will run. Null otherwise. A refusal is read as
   * StoreFleetPort.listDevices reads it: the assignment's record, or the device's answer.
   */
  async #untakenActive(device: DeviceRecord): Promise<{ id: string; model: string; version: string } | null> {
    const retained = device.retainedAssignment;
    if (!retained || retained.role !== 'active' || device.active?.sha256 === retained.sha256) return null;
    const { assignments, reports } = this.options.fleet.repos;
    const refused = (await assignments.get(retained.id, device.id))?.state === 'refused' || (await reports.findAnswer(retained.id, device.id))?.outcome === 'refused';
    return refused ? null : { id: retained.id, model: retained.model, version: retained.version };
  }

  async #targets(request: AssignRequest): Promise<DeviceRecord[]> {
    const { devices } = this.options.fleet.repos;
    if (request.deviceIds) {
      const found: DeviceRecord[] = [];
      for (const id of request.deviceIds) {
        const device = await devices.get(id);
        if (!device) throw new ServiceError('not_found', `no device ${id}`);
        if (device.revokedAt !== null) throw new ServiceError('conflict', `device ${id} is revoked`);
        found.push(device);
      }
      return found;
    }
    const live = await devices.list({ live: true });
    if (request.allDevices) {
      if (live.length === 0) throw new ServiceError('not_found', 'no device is enrolled');
      return live;
    }
    const selector = request.selector!;
    const matching = live.filter((device) => selectorMatches(selector, device.labels));
    if (matching.length === 0) throw new ServiceError('not_found', `no enrolled device matches the selector ${describeSelector(selector)}`);
    return matching;
  }
}

/** Whether one of the device's slots (as its latest heartbeat or answer said) holds the artifact. */
function holdsArtifact(device: DeviceRecord, artifactId: string): boolean {
  return [device.active, device.previous, device.candidate].some((slot) => slot?.sha256 === artifactId);
}

/** What a device runs, for messages: `iris@1`, or `no model` (none yet). */
function runs(device: DeviceRecord): string {
  return device.active ? `${device.active.model}@${device.active.version}` : 'no model';
}
