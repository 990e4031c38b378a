import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson, type Manifest } from '../artifact/manifest.ts';
import { verifyManifestSignature } from '../artifact/signature.ts';
import { keyId } from '../artifact/signing-keys.ts';
import { SignerSchema, type Signer } from './payloads.ts';

/**
 * Artifacts signed by a key other than the server's. Devices pin only the server's key; for an
 * artifact signed by another key the server trusts (`--trusted-key`, checked when it was pushed),
 * the server's assignment carries an endorsement: that key, and the server's signature over
 * `{purpose, artifactId, keyId, publicKey}`. The assignment's own signature covers it too; the
 * endorsement's signature lets the device keep it with the installed model and check it again,
 * with the pinned key, every time the model is loaded (at start, for a rollback from disk), when
 * no assignment is at hand. It vouches for one artifact only.
 */
const PURPOSE = 'fleetprune/v1 artifact signer';

/** The DER prefix of an ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function rawPublicKey(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'der' }).subarray(ED25519_SPKI_PREFIX.length).toString('base64');
}

function publicKeyFromRaw(raw: string): KeyObject {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(raw, 'base64')]), format: 'der', type: 'spki' });
}

function endorsedContent(artifactId: string, signer: Pick<Signer, 'keyId' | 'publicKey'>): Buffer {
  return Buffer.from(canonicalJson({ purpose: PURPOSE, artifactId, keyId: signer.keyId, publicKey: signer.publicKey }));
}

/** The server's endorsement of `signerKey` (an ed25519 public key) for the artifact `artifactId`. */
export function endorseSigner(artifactId: string, signerKey: KeyObject, serverPrivateKey: KeyObject): Signer {
  const unsigned = { keyId: keyId(signerKey), publicKey: rawPublicKey(signerKey) };
  return { ...unsigned, signature: sign(null, endorsedContent(artifactId, unsigned), serverPrivateKey).toString('base64') };
}

/** The key an endorsement vouches for as the signer of `artifactId`, or a one-line reason it does not. */
export function endorsedSignerKey(input: unknown, artifactId: string, serverPublicKey: KeyObject): KeyObject | string {
  const parsed = SignerSchema.safeParse(input);
  if (!parsed.success) return 'not a valid signer endorsement';
  const signer = parsed.data;
  let valid = false;
  try {
    valid = verify(null, endorsedContent(artifactId, signer), serverPublicKey, Buffer.from(signer.signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return `the endorsement of signer key ${signer.keyId} does not carry the server's signature for this artifact`;
  let key: KeyObject;
  try {
    key = publicKeyFromRaw(signer.publicKey);
  } catch {
    return `the endorsed signer key ${signer.keyId} is not an ed25519 key`;
  }
  const actual = keyId(key);
  if (actual !== signer.keyId) return `the endorsed signer key is ${actual}, not ${signer.keyId}`;
  return key;
}

/**
 * Checks a manifest's signature for a device: with the pinned server key when the server made it;
 * else with the key the server endorsed for this artifact (`signer`: from the assignment, or kept
 * with the installed model), which must be the key that signed it. Null when it verifies, else one line.
 */
export function verifyManifestForDevice(manifest: Manifest, artifactId: string, serverPublicKey: KeyObject, signer: unknown): string | null {
  const serverKeyId = keyId(serverPublicKey);
  const signedWith = manifest.signature?.keyId;
  if (signedWith === undefined || signedWith === serverKeyId) return verifyManifestSignature(manifest, serverPublicKey);
  if (signer === undefined) return `signature: made with key ${signedWith}, not the server's key ${serverKeyId}, and the server vouched for no other key`;
  const key = endorsedSignerKey(signer, artifactId, serverPublicKey);
  if (typeof key === 'string') return `signature: made with key ${signedWith}, not the server's key ${serverKeyId}: ${key}`;
  const endorsed = keyId(key);
  if (endorsed !== signedWith) return `signature: made with key ${signedWith}, but the server vouched for key ${endorsed}`;
  return verifyManifestSignature(manifest, key);
}
