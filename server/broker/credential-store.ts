/** A device's broker credential: the MQTT username and client id are the device id. */
export interface DeviceCredential {
  deviceId: string;
  /** `$7$` PBKDF2-SHA512 hash of the device secret (see password-hash.ts). */
  passwordHash: string;
  /** A revoked device is refused at connect and disconnected when the broker learns of it. */
  revoked: boolean;
}

/**
 * Where the brokers look up device credentials. The server's store implements it; enrollment
 * writes to it, revocation flips `revoked`, and the broker is told via Broker.credentialsChanged().
 */
export interface CredentialStore {
  getDevice(deviceId: string): Promise<DeviceCredential | undefined>;
  listDevices(): Promise<DeviceCredential[]>;
}

/** The privileged identity the server itself connects (or is trusted) as. */
export interface ServerIdentity {
  username: string;
  password: string;
}

/** Reserved: no device may be enrolled under this id. */
export const DEFAULT_SERVER_USERNAME = 'fleetprune-server';
