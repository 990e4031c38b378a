import type { AssignCommand, DeliveryResult, FleetPort, RevertCommand } from './fleet-port.ts';

/**
 * Whether the fleet can reach the devices yet, for a leader whose external broker connection is
 * still being made (a restart or an election during a broker outage: the fleet keeps retrying).
 * The leader drives its rollouts meanwhile — operator commands (a rollback above all) are decided
 * and recorded at once — while the commands that need the broker wait (`wrap`): assignments and
 * reverts go out, in the order they were decided, once the connection is made. The retained
 * assignments the connection republishes first are then replaced by the newer ones.
 */
export class FleetReadiness {
  #ready = false;
  #closed = false;
  #closeReason: Error | undefined;
  /** Whether the broker connection is up now (mid-run: it may drop after it was made). */
  readonly #connected: () => boolean;
  readonly #onWaiting: () => void;
  #waiting = false;
  readonly #opened: Promise<void>;
  #open!: () => void;
  #fail!: (error: Error) => void;

  /**
   * `connected`: whether the broker connection is up now. Once it has been made it may drop (a
   * broker restarted or stopped): the commands wait again until it is back, rather than go out to
   * nobody and count as delivery attempts the devices never saw (after a few, every device would
   * count as unreachable, and a promotion would stand on no device's answer). `onWaiting` is told
   * once per outage.
   */
  constructor(connected: () => boolean = () => true, onWaiting: () => void = () => {}) {
    this.#connected = connected;
    this.#onWaiting = onWaiting;
    this.#opened = new Promise<void>((resolve, reject) => {
      this.#open = resolve;
      this.#fail = reject;
    });
    this.#opened.catch(() => {}); // nobody may be waiting
  }

  /** Whether the devices can be reached (the broker connection is made). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Whether commands reach the devices now: the connection was made and is up (a dropped one makes them wait again). */
  get reachable(): boolean {
    return this.#ready && !this.#closed && this.#connected();
  }

  /** The broker connection is made: the waiting commands go out. */
  open(): void {
    if (this.#closed) return;
    this.#ready = true;
    this.#open();
  }

  /** Deposed (or the takeover failed) before the connection was made: the waiting commands fail, sending nothing. */
  close(reason: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    if (!this.#ready) this.#fail(reason);
  }

  /** Until the broker connection is made, and is up now; rejects once closed (deposed, stopping) meanwhile. */
  async #untilConnected(): Promise<void> {
    await this.#opened;
    if (this.#connected()) return;
    if (!this.#waiting) this.#onWaiting();
    this.#waiting = true;
    while (!this.#connected()) {
      if (this.#closed) throw this.#closeReason ?? new Error('closed');
      await new Promise((resolve) => setTimeout(resolve, CONNECTED_POLL_MS));
    }
    this.#waiting = false;
  }

  /** `port`, with assign and revert waiting until the fleet is ready (reads go through at once: they use the store). */
  wrap(port: FleetPort): FleetPort {
    const wrapped: FleetPort = {
      listDevices: (model) => port.listDevices(model),
      assign: async (command: AssignCommand): Promise<readonly DeliveryResult[]> => {
        await this.#untilConnected();
        return port.assign(command);
      },
      revert: async (command: RevertCommand): Promise<readonly DeliveryResult[]> => {
        await this.#untilConnected();
        return port.revert(command);
      },
    };
    if (port.retainedAssignments) {
      const retained = port.retainedAssignments.bind(port);
      return { ...wrapped, retainedAssignments: (deviceIds) => retained(deviceIds) };
    }
    return wrapped;
  }
}

/** How often a command waiting for a dropped broker connection looks whether it is back. */
const CONNECTED_POLL_MS = 500;

/** What a leader's decision log says about a command it decided while its devices cannot be reached yet. */
export function fleetWaitingNote(command: 'resume' | 'promote' | 'abort' | 'rollback' | 'start'): string {
  const what = command === 'rollback' || command === 'abort' ? 'the devices are sent back to their baselines' : 'the devices are sent what this decides';
  return `this server leads but is not connected to the external broker (not yet, or it dropped): the decision is recorded, and ${what} once it connects (the broker connection is retried meanwhile)`;
}
