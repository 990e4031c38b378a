import type { VersionRecord } from '../store/repositories/models-repository.ts';
import { createHash } from 'node:crypto';
import type { Logger } from '../../shared/util/log.ts';
import { ServiceError } from '../app/service-error.ts';
import type { RegistryService } from '../registry/registry-service.ts';
import type { Assignment, AssignmentReport } from '../../shared/protocol/payloads.ts';
import type { AnswerListener, AssignCommand, DeliveryResult, FleetPort, LateDeviceAnswer, RecordFence, RecordGuard, RetainedAssignment, RevertCommand, TargetDevice } from '../rollout/fleet-port.ts';
import type { AssignmentOutcome, AssignmentOutcomes } from './assignment-outcomes.ts';
import type { AssignmentPublisher } from './assignment-publisher.ts';
import type { FleetStore } from './fleet-store.ts';

export interface StoreFleetPortOptions {
  fleet: FleetStore;
  registry: RegistryService;
  publisher: AssignmentPublisher;
  outcomes: AssignmentOutcomes;
  log: Logger;
  /** How long an online device has to answer before it counts as offline (default 30 s). */
  deliveryTimeoutMs?: number;
  /** Who the audit log names for these actions (default `system:rollout`). */
  actor?: string;
  /** Why devices could not download a version (lostModelFile), or null: a rollout of it is refused at its start. */
  lostFile?: (version: VersionRecord) => Promise<string | null>;
}

const DELIVERED: ReadonlySet<AssignmentOutcome> = new Set(['installed', 'activated', 'rolled-back', 'candidate-dropped']);

/**
 * The rollout controller's FleetPort over the device table and the MQTT publisher. Commands use
 * the caller's commandId as the assignment (or fleet command) id, so repeating one changes
 * nothing on a device. A device that is offline gets `offline` at once (its assignment stays
 * retained, or its command queued in its persistent session, for when it reconnects); an online
 * device has `deliveryTimeoutMs` to answer.
 */
export class StoreFleetPort implements FleetPort {
  readonly #options: StoreFleetPortOptions;

  constructor(options: StoreFleetPortOptions) {
    this.#options = options;
  }

  get #actor(): string {
    return this.#options.actor ?? 'system:rollout';
  }

  /**
   * Every live device with its baseline for `model`: the version it is meant to serve, which is
   * the active assignment retained for it when there is one (a device that was offline when a
   * rollback sent it back still reports the version it was sent back from), else the version it
   * last reported active. A retained assignment the device refused (it could not verify or run
   * that version) is not a baseline: sending the device back to it would be refused again and
   * leave it on the candidate, so its baseline is what it reported active. Nor is one older than an
   * assignment the device says it took since (its heartbeat's assignmentSeq, when a server could
   * have sent that number): the store was restored from a backup taken before, and the device, which
   * refuses the retained one as a replay, runs what it reports.
   *
   * What a device reports active is its word (a heartbeat): a version the registry does not hold
   * is no baseline, since no revert could ever send it (it would fail and be retried for ever,
   * and the model's next rollout wait on it), so such a device is left out like one without the model.
   * Nor is a registered version's name on another artifact (a device that kept a model from a
   * registry since reset, or a forged heartbeat): it runs something else than that version, and a
   * rollback of the version's rollout must not count it among the devices running it.
   */
  async listDevices(model: string): Promise<readonly TargetDevice[]> {
    const { devices, reports, assignments } = this.#options.fleet.repos;
    const ceiling = await this.#seqCeiling();
    const registered = new Map<string, Promise<string | null>>();
    const isRegistered = async (ref: { version: string; sha256: string }) => {
      let found = registered.get(ref.version);
      if (!found) registered.set(ref.version, (found = this.#artifactOf(model, ref.version)));
      return (await found) === ref.sha256;
    };
    const targets: TargetDevice[] = [];
    for (const device of await devices.list({ live: true })) {
      const retained = device.retainedAssignment?.role === 'active' ? device.retainedAssignment : null;
      // The assignment's record says so for as long as it is retained (report retention deletes
      // the answer itself after its days); the answer covers records from before answers were kept on them.
      const refused =
        retained !== null &&
        !sameVersion(retained, device.active) &&
        ((await assignments.get(retained.id, device.id))?.state === 'refused' || (await reports.findAnswer(retained.id, device.id))?.outcome === 'refused');
      // The device took a newer assignment than the one the store retains for it: one the store
      // does not hold (it was restored from a backup taken before). The device refuses the retained
      // one as a replay, and a rollback must not send it back to a version it has moved on from.
      const claimed = device.heartbeat?.assignmentSeq;
      if (claimed !== undefined && claimed > ceiling) {
        this.#options.log.warn({ deviceId: device.id, assignmentSeq: claimed, ceiling }, 'device claims to have taken an assignment numbered above any the server has sent: not believed (its retained assignment stays its baseline)');
      }
      const outdated = retained !== null && !sameVersion(retained, device.active) && believedNewer(retained, claimed, ceiling);
      if (outdated) {
        this.#options.log.warn(
          { deviceId: device.id, model, retained: { id: retained.id, version: retained.version, seq: retained.seq }, assignmentSeq: device.heartbeat?.assignmentSeq, active: device.active },
          'device took a newer assignment than the one the store retains for it (the store restored from an older backup?): its baseline is the version it reports active',
        );
      }
      const intended = retained && !refused && !outdated ? retained : device.active;
      const baseline = intended?.model === model && (await isRegistered(intended)) ? intended.version : null;
      if (intended?.model === model && baseline === null) this.#options.log.warn({ deviceId: device.id, model, version: intended.version, sha256: intended.sha256 }, 'device reports a version the registry does not hold (or another artifact under its name): no baseline, left out of rollouts');
      targets.push({ id: device.id, labels: device.labels, baseline });
    }
    return targets;
  }

  /** The artifact of `model`'s version by that name (not an alias or `latest` resolving to another), or null. */
  async #artifactOf(model: string, version: string): Promise<string | null> {
    try {
      const record = await this.#options.registry.resolve(model, version);
      return record.version === version ? record.artifactId : null;
    } catch (error) {
      if (error instanceof ServiceError && error.code === 'not_found') return null;
      throw error;
    }
  }

  async retainedAssignments(deviceIds: readonly string[]): Promise<ReadonlyMap<string, RetainedAssignment>> {
    const found = new Map<string, RetainedAssignment>();
    const ceiling = await this.#seqCeiling();
    for (const [deviceId, device] of await this.#options.fleet.repos.devices.getMany(deviceIds)) {
      const retained = device.retainedAssignment;
      if (!retained) continue;
      const outdated = believedNewer(retained, device.heartbeat?.assignmentSeq, ceiling);
      found.set(deviceId, { id: retained.id, issuedAt: retained.issuedAt, model: retained.model, version: retained.version, ...(outdated ? { outdated } : {}) });
    }
    return found;
  }

  /** The highest assignment number a device may truthfully claim to have taken (see listDevices). */
  async #seqCeiling(): Promise<number> {
    return (await this.#options.fleet.repos.sequences.ceiling('assignment')) + CLOCK_ALLOWANCE_US;
  }

  async unsendable(model: string, version: string): Promise<string | null> {
    const record = await this.#options.registry.resolve(model, version);
    return unsendableReason(() => this.#options.publisher.signerFor(record)) ?? (await this.#options.lostFile?.(record)) ?? null;
  }

  async assign(command: AssignCommand): Promise<readonly DeliveryResult[]> {
    const version = await this.#options.registry.resolve(command.model, command.version);
    const { live, refused } = await this.#partition(command.deviceIds);
    const { publisher } = this.#options;
    // A version no trusted key vouches for (its signer's key left --trusted-key since the push)
    // is refused as every device would refuse it, without sending it: the rollout fails naming the key.
    const unsendable = unsendableReason(() => publisher.signerFor(version));
    if (unsendable) return [...[...live.keys()].map((deviceId) => ({ deviceId, outcome: 'refused' as const, reason: unsendable })), ...refused];
    const held = command.role === 'candidate' ? await this.#yetToTakeBack(live) : [];
    for (const { deviceId } of held) live.delete(deviceId);
    return this.#deliver(command.commandId, live, [...refused, ...held], command, {
      record: async (deviceIds, fence) => void (await publisher.record({ id: command.commandId, version, role: command.role, deviceIds, actor: this.#actor, action: 'rollout.assign', ...(fence ? { fence } : {}) })),
      send: async (deviceIds) => void (await publisher.sendRetained(deviceIds)),
    });
  }

  async revert(command: RevertCommand): Promise<readonly DeliveryResult[]> {
    const { live, refused } = await this.#partition(command.devices.map((device) => device.deviceId));
    const target = new Map(command.devices.map((device) => [device.deviceId, device.version]));
    const { publisher, registry } = this.#options;
    // A device whose baseline is still active only drops its candidate; others get their baseline as active (a rollback from disk).
    const dropsOnly = (deviceId: string) => {
      const version = target.get(deviceId) ?? null;
      const device = live.get(deviceId)!;
      return version === null || (device.activeModel === command.model && device.activeVersion === version);
    };
    return this.#deliver(command.commandId, live, refused, command, {
      record: async (deviceIds, fence) => {
        // Grouped by version: one record (one transaction, one number, one audit entry) per version.
        const reassign = new Map<string, string[]>();
        const retain = new Map<string, string[]>();
        for (const deviceId of deviceIds) {
          const version = target.get(deviceId);
          if (!version) continue; // no baseline: the candidate is only dropped, nothing is retained
          const group = dropsOnly(deviceId) ? retain : reassign;
          const ids = group.get(version);
          if (ids) ids.push(deviceId);
          else group.set(version, [deviceId]);
        }
        for (const [version, ids] of reassign) {
          await publisher.record({ id: command.commandId, version: await registry.resolve(command.model, version), role: 'active', deviceIds: ids, actor: this.#actor, action: 'rollout.revert', restoring: true, revert: true, ...(fence ? { fence } : {}) });
        }
        // The dropped candidate must not come back from the retained topic: retain the baseline as active under a derived id.
        for (const [version, ids] of retain) {
          await publisher.record({ id: derivedId(command.commandId, 'retain'), version: await registry.resolve(command.model, version), role: 'active', deviceIds: ids, actor: this.#actor, action: 'rollout.revert', restoring: true, revert: true, ...(fence ? { fence } : {}) });
        }
      },
      send: async (deviceIds) => {
        const dropOnly = deviceIds.filter(dropsOnly);
        if (dropOnly.length > 0) await publisher.publishCommand({ id: command.commandId, command: 'drop-candidate', deviceIds: dropOnly, actor: this.#actor });
        // A device sent its baseline as active that also holds a candidate of the model (its active
        // model was lost, e.g. damaged on disk, before it installed the rollout's candidate: active
        // none, candidate the rollout's) drops that candidate too: a rollback leaves no candidate.
        // Its answer to the activation decides its delivery; the drop's answer is not waited for.
        const alsoDrop = deviceIds.filter((deviceId) => !dropsOnly(deviceId) && live.get(deviceId)!.candidateModel === command.model);
        if (alsoDrop.length > 0) await publisher.publishCommand({ id: derivedId(command.commandId, 'drop'), command: 'drop-candidate', deviceIds: alsoDrop, actor: this.#actor });
        await publisher.sendRetained(deviceIds);
      },
      // The device table can be behind the device: an activation of the candidate on its way when
      // the rollback was decided (a rollback racing a promotion) leaves the candidate active while
      // the table still shows the baseline. Such a device answers the drop "no candidate to drop"
      // naming the candidate as its active model: it is back only once it takes the retained baseline.
      followUp: {
        id: derivedId(command.commandId, 'retain'),
        devices: new Set([...live.keys()].filter((deviceId) => target.get(deviceId) && dropsOnly(deviceId))),
        needed: async (deviceId, answer) => {
          if (answer.outcome !== 'refused' || answer.reason !== NOTHING_TO_DROP) return false;
          const report = await this.#options.fleet.repos.reports.findAnswer(command.commandId, deviceId);
          return report !== undefined && !(report.model === command.model && report.version === target.get(deviceId));
        },
      },
    });
  }

  /**
   * The devices whose retained assignment is an activation they have not taken yet (a rollback's,
   * the device offline when it was sent back to its baseline; or an assign's, not answered yet),
   * answered `offline`. A candidate
   * sent now would replace that assignment on the device's topic, and the agent takes the newest
   * message only: the device would install the candidate next to the version it was rolled back
   * from and never go back. So the candidate waits; the device's answer to the activation (its
   * slots changed) makes the rollout send it again (RolloutController.deviceOnline, `answered`).
   */
  async #yetToTakeBack(live: ReadonlyMap<string, LiveDevice>): Promise<DeliveryResult[]> {
    const held: DeliveryResult[] = [];
    for (const [deviceId, device] of live) {
      const retained = device.retained;
      if (retained?.role !== 'active' || (device.activeModel === retained.model && device.activeVersion === retained.version)) continue;
      if ((await this.#options.fleet.repos.assignments.get(retained.id, deviceId))?.state !== 'published') continue; // answered: refused, superseded
      held.push({ deviceId, outcome: 'offline', reason: `it has yet to activate ${retained.model}@${retained.version} (assignment ${retained.id}); the candidate follows once it has` });
    }
    return held;
  }

  async #partition(deviceIds: readonly string[]) {
    const live = new Map<string, LiveDevice>();
    const refused: DeliveryResult[] = [];
    const known = await this.#options.fleet.repos.devices.getMany(deviceIds);
    for (const deviceId of deviceIds) {
      const device = known.get(deviceId);
      // A device that pins a replaced server key drops what it is sent without an answer: gone (the
      // rollout goes on without it) at once, saying why. Not 'refused': that would fail the rollout,
      // and mark its candidate failed, for the device's config.
      const pinned = device ? this.#options.publisher.pinProblem(device) : null;
      if (!device) refused.push({ deviceId, outcome: 'gone', reason: 'not an enrolled device' });
      else if (device.revokedAt !== null) refused.push({ deviceId, outcome: 'gone', reason: 'the device is revoked' });
      else if (pinned) refused.push({ deviceId, outcome: 'gone', reason: `the device ${pinned}` });
      else live.set(deviceId, { online: device.online, activeModel: device.active?.model ?? null, activeVersion: device.active?.version ?? null, candidateModel: device.candidate?.model ?? null, retained: device.retainedAssignment });
    }
    return { live, refused };
  }

  /**
   * Records (under the guard: only the devices the command still speaks for), sends, then waits
   * for the online devices' answers, passing each on to `onAnswer` as it comes. Waits are
   * registered before sending, so no answer is missed; a device the guard left out (sent something
   * newer since) is answered `superseded` at once, nothing sent to it.
   */
  async #deliver(
    commandId: string,
    live: Map<string, { online: boolean }>,
    refused: DeliveryResult[],
    { guard, onAnswer }: { guard?: RecordGuard; onAnswer?: AnswerListener },
    steps: { record: (deviceIds: readonly string[], fence?: RecordFence) => Promise<void>; send: (deviceIds: readonly string[]) => Promise<void>; followUp?: FollowUp },
  ): Promise<DeliveryResult[]> {
    const timeout = this.#options.deliveryTimeoutMs ?? 30_000;
    const { outcomes } = this.#options;
    const { reports } = this.#options.fleet.repos;
    const results = new Map<string, DeliveryResult>(refused.map((result) => [result.deviceId, result]));
    const pending: string[] = [];
    const answers = await reports.findAnswers(commandId, [...live.keys()]);
    const waits = new Map<string, ReturnType<AssignmentOutcomes['waitFor']>>();
    const followUps = new Map<string, ReturnType<AssignmentOutcomes['waitFor']>>();
    const { followUp } = steps;
    /** What an answer to the command means for the device (null: not known yet, offline), after its follow-up when it needs one. */
    const settle = async (deviceId: string, answer: Answer): Promise<DeliveryResult | null> => {
      if (!followUp?.devices.has(deviceId) || !(await followUp.needed(deviceId, answer))) return toResult(deviceId, answer.outcome, answer.reason);
      const decided = (await reports.findAnswer(followUp.id, deviceId)) ?? (await followUps.get(deviceId)?.promise) ?? null;
      return decided ? toResult(deviceId, decided.outcome, decided.reason) : null;
    };
    for (const deviceId of live.keys()) {
      const answered = answers.get(deviceId);
      if (answered) results.set(deviceId, (await settle(deviceId, answered)) ?? { deviceId, outcome: 'offline' });
      else pending.push(deviceId);
    }
    for (const result of results.values()) if (result.outcome !== 'offline') onAnswer?.(result);
    for (const deviceId of pending.filter((id) => live.get(id)!.online)) {
      waits.set(deviceId, outcomes.waitFor(commandId, deviceId, timeout));
      if (followUp?.devices.has(deviceId)) followUps.set(deviceId, outcomes.waitFor(followUp.id, deviceId, timeout));
    }
    const cancelWaits = () => [...waits.values(), ...followUps.values()].forEach((wait) => wait.cancel());
    const recorded = new Set<string>();
    const record = async (owned: readonly string[], fence?: RecordFence) => {
      const ownedIds = new Set(owned);
      const deviceIds = pending.filter((deviceId) => ownedIds.has(deviceId));
      // Fenced (a rollout's guard): a stale recording records nothing and throws (StaleRecordError).
      if (deviceIds.length > 0) await steps.record(deviceIds, fence);
      deviceIds.forEach((deviceId) => recorded.add(deviceId));
    };
    try {
      await (guard ? guard(record) : record(pending));
      if (recorded.size > 0) await steps.send([...recorded]);
    } catch (error) {
      cancelWaits();
      throw error;
    }
    if (onAnswer) {
      for (const [deviceId, wait] of waits) {
        if (!recorded.has(deviceId)) continue;
        void wait.promise
          .then(async (answer) => answer && (await settle(deviceId, answer)))
          .then((result) => result && onAnswer(result))
          .catch(() => {}); // the command's result below reports it
      }
    }
    try {
      for (const deviceId of pending) {
        const wait = waits.get(deviceId);
        if (!recorded.has(deviceId)) {
          wait?.cancel();
          results.set(deviceId, { deviceId, outcome: 'superseded', reason: 'the device has been sent something newer since' });
          continue;
        }
        const answer = wait ? await wait.promise : null;
        results.set(deviceId, (answer && (await settle(deviceId, answer))) ?? { deviceId, outcome: 'offline' });
      }
    } finally {
      cancelWaits();
    }
    return [...live.keys(), ...refused.map((result) => result.deviceId)].map((deviceId) => results.get(deviceId)!);
  }
}

type Answer = { readonly outcome: AssignmentOutcome; readonly reason: string | null };

/** An enrolled device a command goes to, as the device table has it. */
interface LiveDevice {
  readonly online: boolean;
  readonly activeModel: string | null;
  readonly activeVersion: string | null;
  readonly candidateModel: string | null;
  readonly retained: Assignment | null;
}

/** A second answer that decides for some devices instead of their answer to the command. */
interface FollowUp {
  /** The id of the assignment whose answer decides. */
  readonly id: string;
  /** The devices it may apply to (their waits for it start before anything is sent). */
  readonly devices: ReadonlySet<string>;
  /** Whether the device's answer to the command leaves the decision to the follow-up. */
  readonly needed: (deviceId: string, answer: Answer) => Promise<boolean>;
}

/**
 * The agent's refusal of a `drop-candidate` whose candidate slot is already empty: its candidate
 * assignment never got installed (a revert's retained baseline superseded it mid-download) or was
 * never delivered. The device is where the revert wants it, so for a revert that is delivered.
 */
const NOTHING_TO_DROP = 'no candidate to drop';

function toResult(deviceId: string, outcome: AssignmentOutcome, reason: string | null): DeliveryResult {
  return { deviceId, ...deliveryOf(outcome, reason) };
}

/**
 * What a device's answer that no waiting command took means for the rollout whose command it
 * answers (as deliveryOf). The answer to a revert's follow-up — the baseline it retained for a
 * device whose candidate it dropped, `<command>-retain` — is an answer to the revert itself. A
 * drop answered "no candidate to drop" carries what the device runs (LateDeviceAnswer.runs): in time,
 * the revert's follow-up settles such a device when it runs something else (deliver); late, the rollout does.
 */
export function lateAnswerOf(report: AssignmentReport): { actionId: string; answer: LateDeviceAnswer } {
  const base = report.assignmentId.endsWith('-retain') ? report.assignmentId.slice(0, -'-retain'.length) : null;
  const actionId = base !== null && derivedId(base, 'retain') === report.assignmentId ? base : report.assignmentId;
  const delivery = deliveryOf(report.outcome, report.reason);
  const nothingToDrop = report.outcome === 'refused' && report.reason === NOTHING_TO_DROP;
  return { actionId, answer: nothingToDrop ? { ...delivery, runs: { model: report.model, version: report.version } } : delivery };
}

/** What a device's answer to a rollout's assignment or command means for the rollout. */
export function deliveryOf(outcome: AssignmentOutcome, reason: string | null): { outcome: 'delivered' } | { outcome: 'refused'; reason: string } {
  if (DELIVERED.has(outcome) || (outcome === 'refused' && reason === NOTHING_TO_DROP)) return { outcome: 'delivered' };
  return { outcome: 'refused', reason: reason ?? outcome };
}

/**
 * A second, deterministic message id derived from a command id: `<commandId>-<purpose>`, which
 * keeps the rollout's id as its prefix (whose assignment a device holds is told by that prefix),
 * or a hash when that would be longer than a message id may be.
 */
function derivedId(commandId: string, purpose: string): string {
  const readable = `${commandId}-${purpose}`;
  return readable.length <= 64 ? readable : createHash('sha256').update(`${commandId}\u0000${purpose}`).digest('base64url').slice(0, 22);
}

function unsendableReason(check: () => unknown): string | null {
  try {
    check();
    return null;
  } catch (error) {
    if (error instanceof ServiceError) return error.message;
    throw error;
  }
}

function sameVersion(a: { model: string; version: string }, b: { model: string; version: string } | null): boolean {
  return b !== null && a.model === b.model && a.version === b.version;
}

/** A minute, in the microseconds messages are numbered in: the clocks of servers sharing a database may differ by that much. */
const CLOCK_ALLOWANCE_US = 60_000_000;

/**
 * Whether the device says it took an assignment numbered above `retained`: the numbers of one
 * stream only grow (one counter for every device, shared by the servers: FleetSequencesRepository),
 * so it took one sent after the retained one. Not when the retained one is not numbered (recorded
 * before they were), when the device does not say, or when it claims a number above `ceiling`,
 * which no server could have sent.
 */
function believedNewer(retained: { seq?: number }, deviceSeq: number | undefined, ceiling: number): boolean {
  return typeof retained.seq === 'number' && deviceSeq !== undefined && deviceSeq <= ceiling && deviceSeq > retained.seq;
}
