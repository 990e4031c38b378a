import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { constants, existsSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UserError, errorMessage } from '../util/errors.ts';
import { describeFsError } from '../util/fs-checks.ts';
import { sha256Hex } from './digest.ts';
import { pemShapeProblem } from './pem-shape.ts';

export const PRIVATE_KEY_FILE = 'signing.key';
export const PUBLIC_KEY_FILE = 'signing.pub';

export interface SigningKeyFiles {
  privateKeyPath: string;
  publicKeyPath: string;
  keyId: string;
}

/**
 * Identifies an ed25519 key: the first 16 hex digits of the SHA-256 of its public key's SPKI DER.
 * A private key identifies as its public half.
 */
export function keyId(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return sha256Hex(publicKey.export({ type: 'spki', format: 'der' })).slice(0, 16);
}

/**
 * Writes a fresh ed25519 pair into `outDir`: signing.key (PKCS8 PEM, mode 0600) and signing.pub
 * (SPKI PEM). Existing key files are only replaced with `force`, and only once both new files are
 * written: a failure on the way leaves the old pair as it was, and no staged file behind. A key
 * file's place held by anything but a regular file (a directory, a FIFO) is refused before
 * anything is staged. The two files are renamed into place one after the other, so the old
 * private key is copied first; should the public key's rename fail, the copy is renamed back
 * (or, with no old private key, the new one removed). Only if that fails too does the error name
 * where the copy of the old private key is.
 */
export async function generateSigningKeys(outDir: string, options: { force?: boolean } = {}): Promise<SigningKeyFiles> {
  const privateKeyPath = join(outDir, PRIVATE_KEY_FILE);
  const publicKeyPath = join(outDir, PUBLIC_KEY_FILE);
  const existing = [privateKeyPath, publicKeyPath].filter((path) => existsSync(path));
  if (existing.length > 0 && !options.force) {
    throw new UserError(`${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; refusing to overwrite (use --force)`);
  }
  for (const path of existing) await refuseUnlessRegularFile(path);
  // The old private key is read before anything is staged: a failure reading it leaves nothing behind.
  const oldPrivate = existing.includes(privateKeyPath) ? await readOldPrivateKey(privateKeyPath) : null;
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const staged: string[] = [];
  let oldPrivateCopy: string | null = null;
  let privateReplaced = false;
  let created: string | undefined;
  try {
    created = await mkdir(outDir, { recursive: true });
    // Staged beside their final names, then renamed over them: the new private key file is
    // created with mode 0600, and the old pair stays whole until both new files are on disk.
    const stagedPrivate = await writeStaged(privateKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600, staged);
    const stagedPublic = await writeStaged(publicKeyPath, publicKey.export({ type: 'spki', format: 'pem' }), 0o644, staged);
    if (oldPrivate) oldPrivateCopy = await writeStaged(privateKeyPath, oldPrivate, 0o600, staged);
    await rename(stagedPrivate, privateKeyPath);
    privateReplaced = true;
    await rename(stagedPublic, publicKeyPath);
  } catch (error) {
    let restoreFailure: unknown = null;
    if (privateReplaced) {
      try {
        if (oldPrivateCopy) await rename(oldPrivateCopy, privateKeyPath);
        else await rm(privateKeyPath, { force: true });
      } catch (failure) {
        restoreFailure = failure;
      }
    }
    // The copy of the old private key stays when it could not be put back: it is the only one.
    await Promise.all(staged.filter((path) => !(restoreFailure && path === oldPrivateCopy)).map((path) => rm(path, { force: true }).catch(() => {})));
    // The directories it made for the pair go too (a full disk took the directory but not the keys).
    if (created !== undefined && !restoreFailure) await removeEmptyDirs(outDir, created);
    if (restoreFailure) {
      const lost = oldPrivateCopy
        ? `the old private key could not be put back (${errorMessage(restoreFailure)}): the old private key is in ${oldPrivateCopy} (rename it to ${privateKeyPath})`
        : `the new private key could not be removed (${errorMessage(restoreFailure)}): remove ${privateKeyPath}`;
      throw new UserError(`cannot write signing keys to ${outDir}: ${errorMessage(error)}; ${lost}`, { cause: error });
    }
    throw new UserError(`cannot write signing keys to ${outDir}: ${errorMessage(error)}`, { cause: error });
  }
  // The new pair is in place: the copy of the old private key goes.
  if (oldPrivateCopy) await rm(oldPrivateCopy, { force: true });
  return { privateKeyPath, publicKeyPath, keyId: keyId(publicKey) };
}

/** Removes `dir` and its parents up to `top` (which mkdir made), each only if empty; stops at the first that is not. */
async function removeEmptyDirs(dir: string, top: string): Promise<void> {
  for (let at = dir; ; at = dirname(at)) {
    if (!(await rmdir(at).then(() => true, () => false)) || at === top || dirname(at) === at) return;
  }
}

/**
 * Refuses, with a UserError, a key file's place held by anything but a regular file (or a symlink
 * to one): a directory, or a FIFO, socket or device, whose read (of the old private key, for its
 * copy) would block forever or never end.
 */
async function refuseUnlessRegularFile(path: string): Promise<void> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    throw new UserError(`cannot replace ${path}: ${describeFsError(error)}`, { cause: error });
  }
  const refusal = notRegularFile(path, info);
  if (refusal) throw new UserError(refusal);
}

/** Why `path` (described by `info`) is not replaced with a key file, or null for a regular file. */
function notRegularFile(path: string, info: Stats): string | null {
  if (info.isFile()) return null;
  if (info.isDirectory()) return `${path} is a directory; refusing to replace it with a key file`;
  const kind = info.isFIFO() ? 'a FIFO' : info.isSocket() ? 'a socket' : info.isCharacterDevice() || info.isBlockDevice() ? 'a device' : 'not a regular file';
  return `${path} is ${kind === 'not a regular file' ? kind : `${kind}, not a regular file`}; refusing to replace it with a key file`;
}

/**
 * The bytes of the private key about to be replaced, for the copy that can put it back. Checked
 * on the open file, not by path: a FIFO put in its place after refuseUnlessRegularFile would
 * otherwise block the read forever (O_NONBLOCK keeps the open itself from waiting for a writer).
 */
async function readOldPrivateKey(path: string): Promise<Buffer> {
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const refusal = notRegularFile(path, await handle.stat());
      if (refusal) throw new UserError(refusal);
      return await handle.readFile();
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`cannot read ${path} (to keep a copy while it is replaced): ${describeFsError(error)}`, { cause: error });
  }
}

/** Writes `data` to a new temporary file next to `path` (recorded in `staged`) and returns its name. */
async function writeStaged(path: string, data: string | Buffer, mode: number, staged: string[]): Promise<string> {
  const temp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, 'wx', mode);
  staged.push(temp);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return temp;
}

export function loadPrivateKey(path: string): Promise<KeyObject> {
  return loadKey(path, 'private');
}

export function loadPublicKey(path: string): Promise<KeyObject> {
  return loadKey(path, 'public');
}

/** Far above a PEM ed25519 key (~120 bytes): a larger file is something else, and is not read whole. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

async function loadKey(path: string, type: 'private' | 'public'): Promise<KeyObject> {
  let pem: string;
  try {
    // A device, FIFO or huge file given by mistake would block or fill memory on a plain read.
    const info = await stat(path);
    if (!info.isFile()) throw new UserError(`cannot read ${type} key ${path}: not a regular file`);
    if (info.size > MAX_KEY_FILE_BYTES) throw new UserError(`${path}: not a PEM ${type} key (${info.size} bytes; a key file is far smaller)`);
    pem = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`cannot read ${type} key ${path}: ${describeFsError(error)}`, { cause: error });
  }
  if (type === 'public' && pem.includes('PRIVATE KEY')) {
    throw new UserError(`${path}: is a private key; pass the public key (${PUBLIC_KEY_FILE})`);
  }
  if (type === 'private' && pem.includes('PUBLIC KEY') && !pem.includes('PRIVATE KEY')) {
    throw new UserError(`${path}: is a public key; signing needs the private key (${PRIVATE_KEY_FILE})`);
  }
  if (type === 'private' && /ENCRYPTED/.test(pem)) {
    throw new UserError(`${path}: is an encrypted private key; signing needs an unencrypted one (as \`fleetprune keys generate\` writes)`);
  }
  // ssh-keygen's own formats (~/.ssh/id_ed25519 and its .pub) hold ed25519 keys too, but not as
  // PEM: OpenSSL's answer was "error:1E08010C:DECODER routines::unsupported".
  if (/^\s*(ssh-(ed25519|rsa|dss) |ecdsa-sha2-)|-----BEGIN OPENSSH PRIVATE KEY-----/.test(pem)) {
    throw new UserError(`${path}: is an OpenSSH key; fleetprune reads PEM keys, as \`fleetprune keys generate\` writes them (${type === 'private' ? PRIVATE_KEY_FILE : PUBLIC_KEY_FILE})`);
  }
  const shape = pemShapeProblem(pem);
  if (shape) throw new UserError(`${path}: not a PEM ${type} key: it ${shape}`);
  let key: KeyObject;
  try {
    key = type === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
  } catch (error) {
    throw new UserError(`${path}: not a PEM ${type} key (${errorMessage(error)})`, { cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UserError(`${path}: not an ed25519 key (${key.asymmetricKeyType})`);
  return key;
}
