import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../shared/artifact/signing-keys.ts';
import { writeFileAtomic, writeNewFileSynced } from '../../shared/util/atomic-file.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

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
    await createKeyUnlessPresent(dir);
  }
  const privateKey = await loadPrivateKey(privateKeyPath);
  await removeStaleStagedKeys(dir);
  return { privateKey, publicKey: createPublicKey(privateKey), privateKeyPath };
}

/** A staged key file older than this was left by a start that was killed (a peer's own is seconds old). */
const STALE_STAGED_KEY_MS = 10 * 60_000;
const STAGED_KEY_FILE = new RegExp(`^\\.(${[PRIVATE_KEY_FILE, PUBLIC_KEY_FILE].map((name) => name.replaceAll('.', '\\.')).join('|')})\\.tmp-[0-9a-f]{12}$`);

/**
 * Removes the staged key files (`.signing.key.tmp-…`, `.signing.pub.tmp-…`) a start killed
 * between writing and removing them left behind: a private key nobody installed should not lie
 * about. Only those older than STALE_STAGED_KEY_MS: another server sharing the data dir may be
 * staging its own right now. Never fails the start: one it cannot remove is tried again at the next.
 */
async function removeStaleStagedKeys(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const now = Date.now();
  for (const name of names.filter((entry) => STAGED_KEY_FILE.test(entry))) {
    const path = join(dir, name);
    const info = await lstat(path).catch(() => null);
    if (info?.isFile() && now - info.mtimeMs > STALE_STAGED_KEY_MS) await rm(path, { force: true }).catch(() => {});
  }
}

/**
 * Makes the key pair, unless another server sharing the data dir (PostgreSQL peers starting
 * together) made one first: the private key appears by link(), which fails when the name exists,
 * so exactly one key is ever installed and every server signs with it. The public half is then
 * written from whichever key is installed.
 */
async function createKeyUnlessPresent(dir: string): Promise<void> {
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  try {
    await mkdir(dir, { recursive: true });
    const { privateKey } = generateKeyPairSync('ed25519');
    const staged = join(dir, `.${PRIVATE_KEY_FILE}.tmp-${randomBytes(6).toString('hex')}`);
    try {
      await writeNewFileSynced(staged, privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
      await link(staged, privateKeyPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await rm(staged, { force: true });
    }
    const installed = await loadPrivateKey(privateKeyPath);
    await writeFileAtomic(join(dir, PUBLIC_KEY_FILE), createPublicKey(installed).export({ type: 'spki', format: 'pem' }));
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`cannot write signing keys to ${dir}: ${errorMessage(error)}`, { cause: error });
  }
}
