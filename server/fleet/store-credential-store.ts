import type { CredentialStore, DeviceCredential } from '../broker/credential-store.ts';
import type { DeviceRecord } from '../store/repositories/devices-repository.ts';
import type { FleetStore } from './fleet-store.ts';

/** The brokers' CredentialStore over the devices table (enrollment and revocation write it). */
export class StoreCredentialStore implements CredentialStore {
  constructor(private readonly fleet: FleetStore) {}

  async getDevice(deviceId: string): Promise<DeviceCredential | undefined> {
    const device = await this.fleet.repos.devices.get(deviceId);
    return device && toCredential(device);
  }

  async listDevices(): Promise<DeviceCredential[]> {
    return (await this.fleet.repos.devices.list()).map(toCredential);
  }
}

function toCredential(device: DeviceRecord): DeviceCredential {
  return { deviceId: device.id, passwordHash: device.secretHash, revoked: device.revokedAt !== null };
}
