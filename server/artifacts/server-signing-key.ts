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

/**
 * The ed25519 key the server signs pruning-job outputs with: `<data-dir>/keys/signing.key`, made
 * on first start. A key that goes missing once devices are enrolled is not replaced: their agent
 * configs pin its public half, so every device would refuse every model signed with a new one;
 * the start stops and says so. `enrolledDevices` counts them (not revoked).
 */
export async function loadOrCreateServerKey(dataDir: string, enrolledDevices: () => Promise<number>): Promise<ServerSigningKey> {
  const dir = join(dataDir, KEYS_SUBDIR);
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  if (!existsSync(privateKeyPath)) {
    const devices = await enrolledDevices();
    if (devices > 0) {
      throw new UserError(
        `${privateKeyPath} is missing, but ${devices} enrolled device(s) pin its public key: ` +
          'restore the key from a backup (every device would refuse every model signed with a new key)',
      );
    }
    await generateSigningKeys(dir, { force: true });
  }
  const privateKey = await loadPrivateKey(privateKeyPath);
  return { privateKey, publicKey: createPublicKey(privateKey), privateKeyPath };
}
