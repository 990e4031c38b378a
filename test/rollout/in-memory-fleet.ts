import type { AssignCommand, DeliveryResult, FleetPort, ModelStatusPort, RevertCommand, TargetDevice, VersionStatus } from '../../server/rollout/fleet-port.ts';

interface SimulatedDevice {
  id: string;
  labels: Record<string, string>;
  active: string | null;
  candidate: string | null;
  online: boolean;
  /** What the device actually did, in order: `candidate:2`, `active:2`, `revert:1`. */
  effects: string[];
}

/**
 * A fleet of simulated devices for controller tests. Like the real agent, a device applies a
 * command id once: a repeated command (a replay after a crash) changes nothing and is
 * acknowledged again.
 */
export class InMemoryFleet implements FleetPort {
  readonly devices = new Map<string, SimulatedDevice>();
  readonly applied = new Set<string>();
  /** Every call, including repeats. */
  readonly calls: string[] = [];
  alive = true;
  /** While set, reverts wait for it (a revert held up by a failing store or broker). */
  revertsHeld: Promise<void> | undefined;

  constructor(devices: readonly TargetDevice[]) {
    for (const device of devices) this.devices.set(device.id, { id: device.id, labels: { ...device.labels }, active: device.baseline, candidate: null, online: true, effects: [] });
  }

  async listDevices(): Promise<readonly TargetDevice[]> {
    this.#check();
    return [...this.devices.values()].map((d) => ({ id: d.id, labels: d.labels, baseline: d.active }));
  }

  async assign(command: AssignCommand): Promise<readonly DeliveryResult[]> {
    this.#check();
    this.calls.push(command.commandId);
    return command.deviceIds.map((deviceId) => this.#apply(command.commandId, deviceId, (device) => {
      if (command.role === 'candidate') device.candidate = command.version;
      else {
        device.active = command.version;
        device.candidate = null;
      }
      return `${command.role}:${command.version}`;
    }));
  }

  async revert(command: RevertCommand): Promise<readonly DeliveryResult[]> {
    this.#check();
    await this.revertsHeld;
    this.calls.push(command.commandId);
    return command.devices.map(({ deviceId, version }) => this.#apply(command.commandId, deviceId, (device) => {
      device.active = version;
      device.candidate = null;
      return `revert:${version}`;
    }));
  }

  #apply(commandId: string, deviceId: string, change: (device: SimulatedDevice) => string): DeliveryResult {
    const device = this.devices.get(deviceId);
    if (!device) return { deviceId, outcome: 'refused', reason: 'unknown device' };
    if (!device.online) return { deviceId, outcome: 'offline' };
    const key = `${commandId}/${deviceId}`;
    if (!this.applied.has(key)) {
      this.applied.add(key);
      device.effects.push(change(device));
    }
    return { deviceId, outcome: 'delivered' };
  }

  #check(): void {
    if (!this.alive) throw new Error('process is dead');
  }
}

export class InMemoryModelStatus implements ModelStatusPort {
  production: string | null;
  readonly statuses = new Map<string, { status: VersionStatus; reason: string }>();
  readonly applied = new Set<string>();
  alive = true;

  constructor(production: string | null) {
    this.production = production;
  }

  async productionVersion(): Promise<string | null> {
    if (!this.alive) throw new Error('process is dead');
    return this.production;
  }

  async setVersionStatus(change: { commandId: string; model: string; version: string; status: VersionStatus; reason: string }): Promise<void> {
    if (!this.alive) throw new Error('process is dead');
    if (this.applied.has(change.commandId)) return;
    this.applied.add(change.commandId);
    this.statuses.set(change.version, { status: change.status, reason: change.reason });
    // As RegistryModelStatus: failed and rolled-back take the alias away from the version; a
    // new production version supersedes the one that held it, and any still marked production.
    if (change.status !== 'production') {
      if (this.production === change.version) this.production = null;
      return;
    }
    const superseded = new Set([...this.statuses].filter(([, recorded]) => recorded.status === 'production').map(([version]) => version));
    if (this.production !== null) superseded.add(this.production);
    superseded.delete(change.version);
    for (const version of superseded) this.statuses.set(version, { status: 'superseded', reason: `superseded by ${change.model}@${change.version}` });
    this.production = change.version;
  }
}
