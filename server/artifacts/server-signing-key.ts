import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateSigningKeys, loadPrivateKey, PRIVATE_KEY_FILE } from '../../shared/artifact/signing-keys.ts';

export const KEYS_SUBDIR = 'keys';

export interface ServerSigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  privateKeyPath: string;
}

/** The ed25519 key the server signs pruning-job outputs with: `<data-dir>/keys/signing.key`, made on first start. */
export async function loadOrCreateServerKey(dataDir: string): Promise<ServerSigningKey> {
  const dir = join(dataDir, KEYS_SUBDIR);
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  if (!existsSync(privateKeyPath)) await generateSigningKeys(dir, { force: true });
  const privateKey = await loadPrivateKey(privateKeyPath);
  return { privateKey, publicKey: createPublicKey(privateKey), privateKeyPath };
}
