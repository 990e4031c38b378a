import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateSigningKeys, loadPrivateKey, PRIVATE_KEY_FILE } from '../../shared/artifact/signing-keys.ts';
import { UserError } from '../../shared/util/errors.ts';

export const KEYS_SUBDIR = 'keys';

export interface ServerSigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  privateKeyPath: string;
}

/** What already depends on the server's key: a new key would leave it unverifiable. */
export interface KeyDependents {
  /** Enrolled (not revoked) devices: their agent configs pin the server's public key. */
  devices: number;
  /** Registered model versions: pruning-job outputs are signed with the key. */
  versions: number;
}

/**
 * The ed25519 key the server signs pruning-job outputs with: `<data-dir>/keys/signing.key`, made
 * on first start. A key that goes missing once devices or versions depend on it is not replaced:
 * every device would refuse every model signed with a new one, so the start stops and says so.
 */
export async function loadOrCreateServerKey(dataDir: string, dependents: () => Promise<KeyDependents>): Promise<ServerSigningKey> {
  const dir = join(dataDir, KEYS_SUBDIR);
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  if (!existsSync(privateKeyPath)) {
    const { devices, versions } = await dependents();
    if (devices > 0 || versions > 0) {
      throw new UserError(
        `${privateKeyPath} is missing, but ${devices} enrolled device(s) pin its public key and ${versions} model version(s) are registered: ` +
          'restore the key from a backup (a new key would make every device refuse every model it signs)',
      );
    }
    await generateSigningKeys(dir, { force: true });
  }
  const privateKey = await loadPrivateKey(privateKeyPath);
  return { privateKey, publicKey: createPublicKey(privateKey), privateKeyPath };
}
