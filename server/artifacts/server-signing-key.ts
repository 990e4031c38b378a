import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, lstat, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { keyId, loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../shared/artifact/signing-keys.ts';
import { writeFileAtomic, writeNewFileSynced } from '../../shared/util/atomic-file.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';

export const KEYS_SUBDIR = 'keys';

export interface ServerSigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public key's id: what devices pin, and the `fleet` label of the device series (DEVICE_REPORT_LABELS). */
  keyId: string;
  privateKeyPath: string;
}

/**
 * The ed25519 key the server signs pruning-job outputs with: `<data-dir>/keys/signing.key`, made
 * on first start. A key that goes missing once devices are enrolled is not replaced: their agent
 * configs pin its public half, so every device would refuse every model signed with a new one;
 * the start stops and says so. `enrolledDevices` counts them (not revoked).
 */
export async function loadOrCreateServerKey(dataDir: string, enrolledDevices: () => Promise<number>, log?: { warn(fields: object, message: string): void }): Promise<ServerSigningKey> {
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
  const publicKey = createPublicKey(privateKey);
  if (log) await checkKeyFiles(dir, publicKey, log);
  return { privateKey, publicKey, keyId: keyId(publicKey), privateKeyPath };
}

/**
 * The key files as an operator may have left them: a private key others may read is warned about
 * (as ssh refuses one); a `signing.pub` missing, or not the private key's public half (copied from
 * another server), is written again from it, with a warning: operators hand it out as the key the
 * server signs with (`--trusted-key`, `fleetprune verify --key`).
 */
async function checkKeyFiles(dir: string, publicKey: KeyObject, log: { warn(fields: object, message: string): void }): Promise<void> {
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  const mode = (await stat(privateKeyPath)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    log.warn({ path: privateKeyPath, mode: mode.toString(8) }, `${privateKeyPath} can be read by other users (mode ${mode.toString(8).padStart(4, '0')}): anyone who can read it can sign models every device installs; chmod 600 it`);
  }
  const publicKeyPath = join(dir, PUBLIC_KEY_FILE);
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const found = await readFile(publicKeyPath, 'utf8').catch(() => null);
  let matches = false;
  try {
    matches = found !== null && createPublicKey(found).equals(publicKey);
  } catch {
    matches = false;
  }
  if (matches) return;
  await writeFileAtomic(publicKeyPath, pem).then(
    () => log.warn({ path: publicKeyPath }, `${publicKeyPath} ${found === null ? 'was missing' : 'was not the public half of signing.key'}: written again from signing.key (key ${keyId(publicKey)})`),
    (error: unknown) => log.warn({ path: publicKeyPath, err: errorMessage(error) }, `${publicKeyPath} is not the public half of signing.key, and could not be written again (${errorMessage(error)})`),
  );
}

/** Live devices pinning another signing key than the server's (DevicesRepository.pinningOtherKeys). */
export type PinnedElsewhere = { keyId: string; devices: number; examples: string[] }[];

/**
 * Refuses a start whose signing key is not the one enrolled devices pin (`keys/signing.key`
 * replaced, by `keys generate --force` or a restore of the wrong backup): each of them would
 * refuse every assignment the server sends it. With `accepted` (--accept-new-signing-key: the key
 * was changed on purpose), the start goes on and the log names the devices to enroll again.
 */
export function checkPinnedKey(server: ServerSigningKey, pinnedElsewhere: PinnedElsewhere, accepted: boolean, log: { warn(fields: object, message: string): void }): void {
  if (pinnedElsewhere.length === 0) return;
  const devices = pinnedElsewhere.reduce((sum, key) => sum + key.devices, 0);
  const which = pinnedElsewhere.map((key) => `${key.devices} pin key ${key.keyId} (${key.examples.join(', ')}${key.devices > key.examples.length ? ', …' : ''})`).join('; ');
  const current = server.keyId;
  if (accepted) {
    log.warn(
      { keyId: current, pinnedElsewhere },
      `${devices} enrolled device(s) pin another signing key than this server's ${current} (${which}): they refuse every model it sends them until they are enrolled again under new ids (fleetprune devices enroll) and the old ones revoked`,
    );
    return;
  }
  throw new UserError(
    `${server.privateKeyPath} is key ${current}, but ${devices} enrolled device(s) pin another (${which}), and would refuse every model this server sends them: ` +
      'put back the key they pin (from a backup of the keys/ directory), or, if the key was changed on purpose, start with --accept-new-signing-key and enroll those devices again',
  );
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
