import { sign, verify, type KeyObject } from 'node:crypto';
import { signedContent, type Manifest, type UnsignedManifest } from './manifest.ts';
import { keyId } from './signing-keys.ts';

/** Signs the canonical JSON of the manifest (without `signature`) with an ed25519 private key. */
export function signManifest(manifest: UnsignedManifest | Manifest, privateKey: KeyObject): Manifest {
  const { signature: _previous, ...unsigned } = manifest as Manifest;
  const value = sign(null, Buffer.from(signedContent(unsigned)), privateKey).toString('base64');
  return { ...unsigned, signature: { algorithm: 'ed25519', keyId: keyId(privateKey), value } };
}

/** Checks a manifest's signature against a public key; returns a one-line failure, or null when it verifies. */
export function verifyManifestSignature(manifest: Manifest, publicKey: KeyObject): string | null {
  const { signature } = manifest;
  if (!signature) return 'signature: missing (the artifact is unsigned)';
  const expectedKeyId = keyId(publicKey);
  if (signature.keyId !== expectedKeyId) {
    return `signature: made with key ${signature.keyId}, not with the given key ${expectedKeyId}`;
  }
  const valid = verify(null, Buffer.from(signedContent(manifest)), publicKey, Buffer.from(signature.value, 'base64'));
  return valid ? null : `signature: does not verify with key ${expectedKeyId}`;
}
