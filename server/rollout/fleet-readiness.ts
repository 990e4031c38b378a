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
  readonly #opened: Promise<void>;
  #open!: () => void;
  #fail!: (error: Error) => void;

  constructor() {
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

  /** The broker connection is made: the waiting commands go out. */
  open(): void {
    if (this.#closed) return;
    this.#ready = true;
    this.#open();
  }

  /** Deposed (or the takeover failed) before the connection was made: the waiting commands fail, sending nothing. */
  close(reason: Error): void {
    if (this.#ready || this.#closed) return;
    this.#closed = true;
    this.#fail(reason);
  }

  /** `port`, with assign and revert waiting until the fleet is ready (reads go through at once: they use the store). */
  wrap(port: FleetPort): FleetPort {
    const wrapped: FleetPort = {
      listDevices: (model) => port.listDevices(model),
      assign: async (command: AssignCommand): Promise<readonly DeliveryResult[]> => {
        await this.#opened;
        return port.assign(command);
      },
      revert: async (command: RevertCommand): Promise<readonly DeliveryResult[]> => {
        await this.#opened;
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

/** What a leader's decision log says about a command it decided while its devices cannot be reached yet. */
export function fleetWaitingNote(command: 'resume' | 'promote' | 'abort' | 'rollback' | 'start'): string {
  const what = command === 'rollback' || command === 'abort' ? 'the devices are sent back to their baselines' : 'the devices are sent what this decides';
  return `this server leads but is not connected to the external broker yet: the decision is recorded, and ${what} once it connects (the broker connection is retried meanwhile)`;
}
