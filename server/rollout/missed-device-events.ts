import type { Role } from '../../shared/protocol/payloads.ts';
import type { LateDeviceAnswer } from './fleet-port.ts';
import type { RolloutController } from './rollout-controller.ts';

/** Events kept at most per kind (the newest): a follower that never leads must not grow without bound. */
const MAX_KEPT = 10_000;

type Answer = { deviceId: string; actionId: string; result: LateDeviceAnswer };
type BenchmarkFailure = { deviceId: string; assignmentId: string; reason: string; failedRole: Role };

/**
 * What devices told the fleet while this server drove no rollouts: between the broker coming up
 * and the controller being elected (at every start: an external broker hands over the devices'
 * retained "online" and the answers it kept for the server at once), or on a standby. Handed to
 * the controller once it has recovered, so a device that came back, or answered its revert, while
 * the server was down or starting is not counted unreachable for good. Each is checked against the
 * rollout's state as it is then: an old one changes nothing.
 */
export class MissedDeviceEvents {
  readonly #online = new Set<string>();
  readonly #answers: Answer[] = [];
  readonly #benchmarkFailures: BenchmarkFailure[] = [];

  online(deviceId: string): void {
    this.#online.delete(deviceId);
    this.#online.add(deviceId);
    if (this.#online.size > MAX_KEPT) this.#online.delete(this.#online.values().next().value!);
  }

  answered(answer: Answer): void {
    this.#answers.push(answer);
    if (this.#answers.length > MAX_KEPT) this.#answers.shift();
  }

  benchmarkFailed(failure: BenchmarkFailure): void {
    this.#benchmarkFailures.push(failure);
    if (this.#benchmarkFailures.length > MAX_KEPT) this.#benchmarkFailures.shift();
  }

  /**
   * Passes every kept event to the controller (answers first: they may settle what "online" would
   * re-send), and forgets them; one that fails (the store, say) is reported and the rest still go.
   */
  async replay(controller: RolloutController, onError: (error: unknown, deviceId: string) => void): Promise<void> {
    const answers = this.#answers.splice(0);
    const failures = this.#benchmarkFailures.splice(0);
    const online = [...this.#online];
    this.#online.clear();
    const each = async (deviceId: string, event: () => Promise<void>) => {
      try {
        await event();
      } catch (error) {
        onError(error, deviceId);
      }
    };
    for (const { deviceId, actionId, result } of answers) await each(deviceId, () => controller.deviceAnswered(deviceId, actionId, result));
    for (const { deviceId, assignmentId, reason, failedRole } of failures) await each(deviceId, () => controller.benchmarkFailed(deviceId, assignmentId, reason, failedRole));
    for (const deviceId of online) await each(deviceId, () => controller.deviceOnline(deviceId));
  }
}
