import { randomBytes } from 'node:crypto';
import { isValidDeviceId } from '../../shared/protocol/topics.ts';
import type { CredentialStore, DeviceCredential } from './credential-store.ts';
import { DEFAULT_SERVER_USERNAME } from './credential-store.ts';
import { hashPassword } from './password-hash.ts';

/**
 * A CredentialStore held in memory, for tests and benchmarks. The server's persistent store
 * implements the same interface.
 */
export class InMemoryCredentialStore implements CredentialStore {
  readonly #devices = new Map<string, DeviceCredential>();

  /** Enrolls (or re-enrolls) a device with a fresh random secret and returns the secret. */
  async enroll(deviceId: string): Promise<string> {
    if (!isValidDeviceId(deviceId) || deviceId === DEFAULT_SERVER_USERNAME) throw new Error(`invalid device id ${JSON.stringify(deviceId)}`);
    const secret = randomBytes(32).toString('base64url');
    this.#devices.set(deviceId, { deviceId, passwordHash: await hashPassword(secret), revoked: false });
    return secret;
  }

  revoke(deviceId: string): void {
    const device = this.#devices.get(deviceId);
    if (device) device.revoked = true;
  }

  async getDevice(deviceId: string): Promise<DeviceCredential | undefined> {
    const device = this.#devices.get(deviceId);
    return device && { ...device };
  }

  async listDevices(): Promise<DeviceCredential[]> {
    return [...this.#devices.values()].map((device) => ({ ...device }));
  }
}
