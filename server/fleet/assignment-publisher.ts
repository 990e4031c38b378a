import type { Assignment, FleetCommand, Role, Signer } from '../../shared/protocol/payloads.ts';
import type { Logger } from '../../shared/util/log.ts';
import type { Broker } from '../broker/broker.ts';
import type { DeviceRecord } from '../store/repositories/devices-repository.ts';
import type { VersionRecord } from '../store/repositories/models-repository.ts';
import { buildAssignment, commandChunks, publishAssignmentPayload, publishFleetCommand } from './fleet-publisher.ts';
import type { FleetStore } from './fleet-store.ts';
import { Mutex } from '../../shared/util/mutex.ts';
import { signAssignment } from '../../shared/protocol/message-signature.ts';
import { endorseSigner } from '../../shared/protocol/signer-endorsement.ts';
import { keyId } from '../../shared/artifact/signing-keys.ts';
import { ServiceError } from '../app/service-error.ts';
import type { TrustedKeys } from '../artifacts/trusted-keys.ts';
import type { KeyObject } from 'node:crypto';
import { StaleRecordError, type RecordFence } from '../rollout/fleet-port.ts';

export interface PublishRequest {
  /** The assignment id, the same for every device (a device handles an id once). */
  id: string;
  version: VersionRecord;
  role: Role;
  deviceIds: readonly string[];
  actor: string;
  /** Audit action, e.g. `assignment.create` or `rollout.assign`. */
  action: string;
  /**
   * A revert to a version the devices ran (a rollout's baseline; an operator's assignment of a
   * version every target device holds, AssignmentService.assign): sent even when its signer key
   * is no longer trusted, without the server's endorsement. Devices go back to the copy they hold,
   * whose endorsement they kept; one that would have to download it cannot verify it and refuses.
   */
  restoring?: boolean;
  /** A rollout's revert: each device goes back to its baseline (the assignment says so: Assignment.revert). */
  revert?: boolean;
  /**
   * A rollout's recording: the rollout revision its guard decided at. The transaction records only
   * while the rollout is still there (holding its row until it commits); else it records nothing
   * and fails with StaleRecordError (a deposed leader's action landing after the new leader's rollback).
   */
  fence?: RecordFence;
  /**
   * A direct assignment (AssignmentService): refused, nothing recorded, when the version is retired
   * by the time the transaction records (a conflict ServiceError, as the service's early check
   * gives). Read with the model's row locked, as RegistryService.setRetired locks it: a retirement
   * either committed before (seen here) or waits for this commit. Not for a rollout's recordings:
   * its candidate was checked at its start (StoreRolloutRepository.create), and a revert goes back
   * to the devices' baseline even when it was retired since.
   */
  refuseRetired?: boolean;
}

export interface CommandRequest {
  /** The command id, the same for every device (a device handles an id once). */
  id: string;
  command: FleetCommand['command'];
  deviceIds: readonly string[];
  actor: string;
}

/** The devices an audit entry names: every one up to 100, then the first 100 and the count (each device's own record is in device_assignments). */
export function auditedDevices(deviceIds: readonly string[]): { devices: string[]; deviceCount?: number } {
  return deviceIds.length <= AUDITED_DEVICES ? { devices: [...deviceIds] } : { devices: deviceIds.slice(0, AUDITED_DEVICES), deviceCount: deviceIds.length };
}

const AUDITED_DEVICES = 100;

/**
 * Records and publishes assignments and fleet commands: the records (one per device, the device's retained
 * assignment, an audit entry) are committed first, then each device's retained QoS 1 message is
 * published, so a crash in between is repaired by the start-up republish. Publishing the same id
 * to a device again re-sends the first payload unchanged.
 *
 * What reaches the broker follows the devices table, not the order in which callers run: a send
 * publishes the device's retained assignment as the table holds it when the send's turn comes
 * (sends take turns), so the broker's retained message is always the table's latest, even when a
 * slow caller's send runs after a newer record.
 */
export class AssignmentPublisher {
  readonly #sending = new Mutex();

  constructor(
    private readonly options: {
      fleet: FleetStore;
      broker: Broker;
      serverUrl: () => string;
      /** Settles once serverUrl() answers: a rollout driven as the server starts records after its HTTP listener is bound. */
      serverUrlKnown?: Promise<void>;
      log: Logger;
      signingKey: KeyObject;
      trustedKeys: TrustedKeys;
    },
  ) {}

  /**
   * What an assignment of `version` carries about its signer: nothing when the server's own key
   * signed the manifest (devices pin it); else the server's endorsement of the signer key, which
   * must still be trusted (--trusted-key): a 409 naming the key otherwise, since every device
   * would refuse the artifact.
   */
  signerFor(version: VersionRecord): Signer | undefined {
    const problem = this.signerProblem(version);
    if (problem) throw new ServiceError('conflict', `${version.model}@${version.version} ${problem}; devices would refuse it`);
    const signedWith = version.manifest.signature!.keyId;
    return signedWith === keyId(this.options.signingKey) ? undefined : endorseSigner(version.artifactId, this.options.trustedKeys.get(signedWith)!, this.options.signingKey);
  }

  /**
   * Why no device would take a download of `version` (it is unsigned, or signed with a key that is
   * neither the server's nor trusted, --trusted-key), in words after its name; null when one would.
   * A device that holds the version already switches to it from its own store, which kept the
   * endorsement it came with.
   */
  signerProblem(version: VersionRecord): string | null {
    const signedWith = version.manifest.signature?.keyId;
    if (signedWith === undefined) return 'is unsigned';
    if (signedWith === keyId(this.options.signingKey) || this.options.trustedKeys.get(signedWith)) return null;
    return `is signed with key ${signedWith}, which this server does not trust (--trusted-key)`;
  }

  /**
   * Why the device would drop whatever this server signs (null: it would not): its agent config
   * pins another server key, as a device enrolled before the server's signing key was replaced
   * (--accept-new-signing-key) does. It cannot verify an assignment's signature, drops it and
   * answers nothing.
   */
  pinProblem(device: Pick<DeviceRecord, 'signingKeyId'>): string | null {
    const serverKey = keyId(this.options.signingKey);
    if (device.signingKeyId === null || device.signingKeyId === serverKey) return null;
    return `pins server key ${device.signingKeyId}, not this server's ${serverKey} (enrolled before the key was replaced), so it drops what this server signs; enroll it again under a new id`;
  }

  /** signerFor, except that a signer key no longer trusted gets no endorsement (undefined) rather than a refusal. */
  #signerIfTrusted(version: VersionRecord): Signer | undefined {
    try {
      return this.signerFor(version);
    } catch (error) {
      if (error instanceof ServiceError) return undefined;
      throw error;
    }
  }

  /** Commits the assignment of each device (its record, its retained assignment) and an audit entry; publishes nothing. Returns each device's assignment. */
  async record(request: PublishRequest): Promise<Map<string, Assignment>> {
    const { fleet, serverUrl, signingKey } = this.options;
    await this.options.serverUrlKnown;
    const now = new Date().toISOString();
    const input = {
      id: request.id,
      model: request.version.model,
      version: request.version.version,
      sha256: request.version.artifactId,
      role: request.role,
      serverUrl: serverUrl(),
      signer: request.restoring ? this.#signerIfTrusted(request.version) : this.signerFor(request.version),
      ...(request.revert ? { revert: true } : {}),
    };
    const recorded = new Map<string, Assignment>();
    await fleet.transaction(async (tx) => {
      // Locks first, before anything is written, in the order every transaction takes them: the
      // model's row, then a rollout's (as StoreRolloutRepository.commit does for a rollback).
      if (request.refuseRetired) {
        const { model, version } = request.version;
        const retired = await tx.versions.lockAndReadRetired(model, version);
        if (retired === undefined) throw new ServiceError('not_found', `no version ${model}@${version}`);
        if (retired) throw new ServiceError('conflict', `${model}@${version} is retired`);
      }
      // The fence holds the rollout's row until this commits.
      const moved = request.fence ? await tx.rolloutRevisions.hold(request.fence.rolloutId, request.fence.revision) : null;
      if (moved !== null && request.fence) throw new StaleRecordError(request.fence, moved);
      // One number for the whole request, taken only if some device gets it anew.
      let fresh: ReturnType<typeof buildAssignment> | undefined;
      let changed = false;
      const devices = await tx.devices.getMany(request.deviceIds);
      for (const deviceId of request.deviceIds) {
        const device = devices.get(deviceId);
        const kept = device?.retainedAssignment?.id === request.id ? device.retainedAssignment : null;
        const assignment = kept ?? signAssignment(deviceId, (fresh ??= buildAssignment(input, await tx.sequences.next('assignment'))), signingKey);
        const created = await tx.assignments.insert({
          id: request.id,
          deviceId,
          model: assignment.model,
          version: assignment.version,
          artifactId: assignment.sha256,
          role: assignment.role,
          issuedAt: assignment.issuedAt,
          issuedBy: request.actor,
          state: 'published',
          reason: null,
          updatedAt: now,
        });
        if (created || device?.retainedAssignment?.id !== request.id) {
          changed = true;
          await tx.devices.setRetainedAssignment(deviceId, assignment);
          // The retained topic no longer holds them: a device that comes back takes only this one.
          await tx.assignments.supersedeUnanswered(deviceId, request.id, now);
        }
        recorded.set(deviceId, assignment);
      }
      // Once per assignment: a recording run again for every device it already recorded (a new
      // leader re-running a pending action) changed nothing, and a second entry with the same
      // assignment id read as a second assignment.
      if (!changed) return;
      await tx.audit.append({
        at: now,
        actor: request.actor,
        action: request.action,
        target: `model:${request.version.model}@${request.version.version}`,
        details: { assignmentId: request.id, role: request.role, artifactId: request.version.artifactId, ...auditedDevices(request.deviceIds) },
      });
    });
    return recorded;
  }

  /** Publishes each device's retained assignment as the table holds it now; returns what was sent. */
  sendRetained(deviceIds: readonly string[]): Promise<Map<string, Assignment>> {
    return this.#sending.run(async () => {
      const sent = new Map<string, Assignment>();
      const devices = await this.options.fleet.repos.devices.getMany(deviceIds);
      for (const deviceId of deviceIds) {
        const retained = devices.get(deviceId)?.retainedAssignment;
        if (!retained) continue;
        // One recorded before assignments were signed is signed now (numbered 0: older than any signed since).
        const assignment = retained.signature ? retained : signAssignment(deviceId, { ...retained, seq: retained.seq ?? 0 }, this.options.signingKey);
        await publishAssignmentPayload(this.options.broker, deviceId, assignment);
        sent.set(deviceId, assignment);
      }
      return sent;
    });
  }

  /**
   * Records a fleet command for each addressed device, then publishes it (a device answers with
   * an assignment report whose assignmentId is the command id; the ingest accepts answers only to
   * what was recorded). Publishing the same id again keeps the first records. More devices than
   * one message can name (64 KiB: about 3,000 ids) go out as several messages with the same id,
   * each numbered: the messages a command needs.
   */
  async publishCommand(request: CommandRequest): Promise<FleetCommand[]> {
    const { fleet, broker, signingKey } = this.options;
    const chunks = commandChunks(request.deviceIds);
    // Numbered and published in one turn: commands reach the broker in the order of their numbers,
    // or a device would refuse the lower-numbered one as a replay.
    return this.#sending.run(async () => {
      const now = new Date().toISOString();
      const numbers = await fleet.transaction(async (tx) => {
        for (const deviceId of request.deviceIds) {
          await tx.commands.insert({ id: request.id, deviceId, command: request.command, issuedAt: now, issuedBy: request.actor });
        }
        const taken: number[] = [];
        for (let i = 0; i < chunks.length; i++) taken.push(await tx.sequences.next('command'));
        return taken;
      });
      const sent: FleetCommand[] = [];
      for (const [i, deviceIds] of chunks.entries()) {
        sent.push(await publishFleetCommand(broker, request.command, { deviceIds }, { privateKey: signingKey, seq: numbers[i]! }, request.id));
      }
      return sent;
    });
  }

  /** Publishes every live device's retained assignment again (an embedded broker forgets them on restart). */
  async republishRetained(): Promise<number> {
    const devices = await this.options.fleet.repos.devices.list({ live: true });
    const count = (await this.sendRetained(devices.filter((device) => device.retainedAssignment).map((device) => device.id))).size;
    if (count > 0) this.options.log.info({ count }, 'republished the devices\' retained assignments');
    return count;
  }
}
