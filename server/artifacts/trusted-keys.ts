import type { KeyObject } from 'node:crypto';
import { keyId, loadPublicKey } from '../../shared/artifact/signing-keys.ts';

/** The public keys whose signatures the server accepts, by key id. */
export class TrustedKeys {
  readonly #keys = new Map<string, KeyObject>();

  add(key: KeyObject): void {
    this.#keys.set(keyId(key), key);
  }

  get(id: string): KeyObject | undefined {
    return this.#keys.get(id);
  }

  ids(): string[] {
    return [...this.#keys.keys()];
  }

  /** The server's own key plus every --trusted-key file. */
  static async load(paths: readonly string[], serverKey: KeyObject): Promise<TrustedKeys> {
    const keys = new TrustedKeys();
    keys.add(serverKey);
    for (const path of paths) keys.add(await loadPublicKey(path));
    return keys;
  }
}
