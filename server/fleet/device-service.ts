import { randomBytes, type KeyObject } from 'node:crypto';
import { keyId } from '../../shared/artifact/signing-keys.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import { AgentConfigSchema, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import type { AssignmentReport } from '../../shared/protocol/payloads.ts';
import { errorMessage, zodIssueMessage } from '../../shared/util/errors.ts';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import { TOKEN_PREFIX } from '../auth/token-service.ts';
import type { Broker, CredentialChange } from '../broker/broker.ts';
import { DEFAULT_SERVER_USERNAME } from '../broker/credential-store.ts';
import { hashPassword } from '../broker/password-hash.ts';
import type { DeviceRecord } from '../store/repositories/devices-repository.ts';
import { UniqueViolation } from '../store/sql-engine.ts';
import { canonicalLabels, deviceLabelsProblem } from './device-labels.ts';
import { OPEN_FLEET_GATE, type FleetGate } from './fleet-gate.ts';
import { refusalView, type DeviceRefusal } from './device-view.ts';
import type { FleetStore } from './fleet-store.ts';
import { clearRetainedStatus } from './fleet-publisher.ts';

/** How many of a device's latest answers are searched for its latest refusal. */
const REFUSAL_LOOKBACK = 100;
const REFUSALS: ReadonlySet<AssignmentReport['outcome']> = new Set(['refused', 'benchmark-failed']);

export interface EnrollRequest {
  id: string;
  labels: Record<string, string>;
  /** Overrides of the URLs written into the agent config (default: the server's public ones). */
  brokerUrl?: string;
  serverUrl?: string;
}

/**
 * What an enrollment did: the device is always enrolled and `config` is its agent config (the only
 * copy of its secrets); `brokerUpdated` false when the broker does not let it in yet (retried).
 */
export type EnrollResult =
  | { config: AgentConfig; brokerUpdated: true }
  | { config: AgentConfig; brokerUpdated: false; brokerProblem: string; warning: string };

/** What a revocation did: always revoked in the store; `brokerUpdated` false when the broker still lets the device in (retried). */
export type RevokeResult =
  | { deviceId: string; brokerUpdated: true }
  | { deviceId: string; brokerUpdated: false; brokerProblem: string; warning: string };

export interface DeviceServiceOptions {
  fleet: FleetStore;
  broker: Broker;
  signingPublicKey: KeyObject;
  /** The broker URL devices connect to, and the server URL they download from. */
  brokerUrl: () => string;
  serverUrl: () => string;
  log: Logger;
  /** Refuses enrollment and revocation on a standby server (default: always allowed). */
  gate?: FleetGate;
  /**
   * Whether this server's connection to the broker is up: false while it is down, when each
   * device's online state is as it was when the connection went (a hung broker keeps them
   * `online`); null on a standby, which does not connect (default: true).
   */
  brokerConnected?: () => boolean | null;
  /** Called after a revocation is committed (the device's exported series are dropped). */
  /** The device (and its API token) was revoked. */
  onRevoked?: (deviceId: string, tokenId: string) => void;
}

/**
 * Enrollment and revocation. Enrolling creates the device's broker secret (only its `$7$` hash
 * is stored) and a device-role API token (only its SHA-256 is stored) and returns both, once, in
 * the agent config. Revoking refuses the device at the broker and revokes its token.
 */
/** The agent's reason for an assignment it passed over for a newer one (agent.ts: `superseded by assignment ID`). */
const SUPERSEDED = /^superseded by assignment /;

export class DeviceService {
  readonly #gate: FleetGate;

  constructor(private readonly options: DeviceServiceOptions) {
    this.#gate = options.gate ?? OPEN_FLEET_GATE;
  }

  /** The agent config of enrollDevice() alone, for in-process callers (a broker left behind is only logged). */
  async enroll(request: EnrollRequest, actor: string): Promise<AgentConfig> {
    return (await this.enrollDevice(request, actor)).config;
  }

  /**
   * Enrolls the device in the store and tells the broker. A broker that cannot be told (Mosquitto's
   * files cannot be rewritten) does not undo the enrollment, whose config is the only copy of the
   * device's secrets: the answer says so, and why (the broker keeps retrying in the background).
   */
  async enrollDevice(request: EnrollRequest, actor: string): Promise<EnrollResult> {
    const { fleet } = this.options;
    await this.#gate.assertActive();
    if (request.id === DEFAULT_SERVER_USERNAME) throw new ServiceError('bad_request', `id: ${DEFAULT_SERVER_USERNAME} is reserved for the server`);
    const labelsProblem = deviceLabelsProblem(request.labels);
    if (labelsProblem) throw new ServiceError('bad_request', labelsProblem);
    // Stored, written to the device's config and shown in one form (selectors compare as text anyway).
    request = { ...request, labels: canonicalLabels(request.labels) };
    const secret = randomBytes(32).toString('base64url');
    const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const tokenId = randomBytes(8).toString('hex');
    const now = new Date().toISOString();
    const config = AgentConfigSchema.safeParse({
      schema: 1,
      deviceId: request.id,
      labels: request.labels,
      broker: { url: request.brokerUrl ?? this.options.brokerUrl(), username: request.id, password: secret },
      server: { url: request.serverUrl ?? this.options.serverUrl(), token },
      serverPublicKey: this.options.signingPublicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
    if (!config.success) {
      throw new ServiceError('bad_request', config.error.issues.map((issue) => `${issue.path.join('.')}: ${zodIssueMessage(issue)}`).join('; '));
    }
    const secretHash = await hashPassword(secret);
    const taken = () => new ServiceError('already_exists', `device ${request.id} is already enrolled (device ids are never reused)`);
    await fleet
      .transaction(async (tx) => {
        const existing = await tx.devices.get(request.id);
        if (existing?.revokedAt) throw new ServiceError('already_exists', `device ${request.id} was revoked at ${existing.revokedAt}, and device ids are never reused: enroll the device under a new id`);
        if (existing) throw taken();
        await tx.tokens.insert({ id: tokenId, tokenHash: sha256Hex(token), role: 'device', label: `device ${request.id}`, createdAt: now, createdBy: actor, revokedAt: null, expiresAt: null });
        await tx.devices.insert({ id: request.id, labels: request.labels, secretHash, tokenId, enrolledAt: now, enrolledBy: actor, signingKeyId: keyId(this.options.signingPublicKey) });
        await tx.audit.append({ at: now, actor, action: 'device.enroll', target: `device:${request.id}`, details: { labels: request.labels, tokenId } });
      })
      .catch((error: unknown) => {
        // Two enrollments of one id at once on PostgreSQL: both found none, the second insert fails.
        throw error instanceof UniqueViolation ? taken() : error;
      });
    const problem = await this.#credentialsChanged({ kind: 'enrolled', deviceId: request.id });
    if (problem === null) return { config: config.data, brokerUpdated: true };
    return {
      config: config.data,
      brokerUpdated: false,
      brokerProblem: problem,
      warning: `device ${request.id} is enrolled, but the broker could not be updated (${problem}): it cannot connect until it is; the server keeps retrying`,
    };
  }

  /**
   * Revokes the device in the store (its token stops working at once) and tells the broker. A
   * broker that cannot be told (Mosquitto's files cannot be rewritten) does not undo the
   * revocation: the answer says so, and why (the broker keeps retrying in the background).
   */
  async revoke(id: string, actor: string): Promise<RevokeResult> {
    await this.#gate.assertActive();
    const now = new Date().toISOString();
    const tokenId = await this.options.fleet.transaction(async (tx) => {
      const device = await tx.devices.get(id);
      if (!device) throw new ServiceError('not_found', `no device ${id}`);
      if (!(await tx.devices.revoke(id, now))) throw new ServiceError('conflict', `device ${id} is already revoked`);
      await tx.tokens.revoke(device.tokenId, now);
      await tx.audit.append({ at: now, actor, action: 'device.revoke', target: `device:${id}`, details: {} });
      return device.tokenId;
    });
    this.options.onRevoked?.(id, tokenId);
    const problem = await this.#credentialsChanged();
    // Not awaited: the revocation is done, and a broker that does not acknowledge (hung, or a
    // half-open connection) must not hold the request up; a failure is logged.
    void this.#clearRetainedStatus(id);
    if (problem === null) return { deviceId: id, brokerUpdated: true };
    return {
      deviceId: id,
      brokerUpdated: false,
      brokerProblem: problem,
      warning: `device ${id} is revoked and its download token no longer works, but the broker could not be updated (${problem}): the device may stay connected to it until it is; the server keeps retrying`,
    };
  }

  /**
   * One page of devices by id (revoked ones included): `limit` of them after the id `after`, and
   * the id to ask for the next page after (null on the last page).
   */
  async page(options: { after?: string; limit: number }): Promise<{ devices: DeviceRecord[]; next: string | null }> {
    const devices = await this.options.fleet.repos.devices.list({ after: options.after, limit: options.limit + 1 });
    const more = devices.length > options.limit;
    if (more) devices.length = options.limit;
    return { devices, next: more ? devices.at(-1)!.id : null };
  }

  /** Whether the online states are live: see DeviceServiceOptions.brokerConnected. */
  brokerConnected(): boolean | null {
    return this.options.brokerConnected ? this.options.brokerConnected() : true;
  }

  /** Live (not revoked) devices, how many of them are connected, and the revoked ones the list still holds. */
  counts(): Promise<{ enrolled: number; online: number; revoked: number }> {
    return this.options.fleet.repos.devices.count();
  }

  async get(id: string): Promise<DeviceRecord> {
    const device = await this.options.fleet.repos.devices.get(id);
    if (!device) throw new ServiceError('not_found', `no device ${id}`);
    return device;
  }

  /**
   * The device's latest answer (among its last REFUSAL_LOOKBACK) that refused an assignment or a
   * command, or failed a candidate's benchmark: what the device list's slots cannot show. One the
   * device carried out later after all (the same assignment answered otherwise since: its config
   * mended, a full disk freed) is no refusal any more.
   */
  async lastRefusal(id: string): Promise<DeviceRefusal | null> {
    const answers = await this.options.fleet.repos.reports.list({ kind: 'assignment', deviceId: id, clock: 'server', limit: REFUSAL_LOOKBACK });
    const carriedOut = new Set<string>();
    for (const { report, receivedAt } of answers.reverse()) {
      if (report.kind !== 'assignment') continue;
      // An assignment the device passed over for a newer one it took (it was offline for both) is
      // routine, as the agent logs it (info): nothing to look into, and no cover for a real refusal.
      if (report.outcome === 'refused' && SUPERSEDED.test(report.reason ?? '')) continue;
      if (!REFUSALS.has(report.outcome)) carriedOut.add(report.assignmentId);
      else if (!carriedOut.has(report.assignmentId)) return refusalView(report, receivedAt);
    }
    return null;
  }

  /**
   * The revoked device's retained status goes from the broker (after the broker has shut the device
   * out, so that it cannot publish another). Not fatal: a retained status of a revoked device that
   * reaches the server later (its last will, a clear lost while an external broker was away) is
   * cleared by the receiver when it drops it.
   */
  async #clearRetainedStatus(id: string): Promise<void> {
    try {
      await clearRetainedStatus(this.options.broker, id);
    } catch (error) {
      this.options.log.warn({ err: errorMessage(error), deviceId: id }, 'could not clear the revoked device\'s retained status from the broker; cleared when the server next receives it');
    }
  }

  /**
   * The change is committed; a broker that cannot be told now (Mosquitto's files not writable, its
   * reload failing) is logged, not fatal, and retries by itself: returns why it failed, or null.
   */
  async #credentialsChanged(change?: CredentialChange): Promise<string | null> {
    try {
      await this.options.broker.credentialsChanged(change);
      return null;
    } catch (error) {
      this.options.log.error({ err: errorMessage(error) }, 'the broker could not be told about changed device credentials; it keeps retrying');
      return errorMessage(error);
    }
  }
}
