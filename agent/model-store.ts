import type { KeyObject } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { readRegularFile } from '../shared/util/read-regular-file.ts';
import { basename, join } from 'node:path';
import { MANIFEST_FILE, MAX_MANIFEST_BYTES, ONNX_FILE, artifactId, type Manifest } from '../shared/artifact/manifest.ts';
import { parseManifestBytes, readManifest } from '../shared/artifact/read-artifact.ts';
import { keyId } from '../shared/artifact/signing-keys.ts';
import type { Signer } from '../shared/protocol/payloads.ts';
import { verifyManifestForDevice } from '../shared/protocol/signer-endorsement.ts';
import { fsyncDirectory, writeNewFileSynced } from '../shared/util/atomic-file.ts';
import { errorMessage } from '../shared/util/errors.ts';
import { sha256OfFile, type VerifiedManifest } from './artifact-fetcher.ts';
import { crashPoint } from './crash-points.ts';
import { describeFileError } from './file-errors.ts';
import { removeLeftover, type CleanupFailure, type DataDir } from './data-dir.ts';
import type { OnnxSource } from './verified-onnx.ts';

/**
 * Next to a model signed by a key other than the server's: the server's endorsement of that key
 * for this artifact (from the assignment that brought it), which every later load checks again.
 */
export const SIGNER_FILE = 'signer.json';
/** The largest signer.json read: an endorsement is a few hundred bytes. */
const MAX_SIGNER_FILE_BYTES = 64 * 1024;
/**
 * The largest manifest.json read from the store. Installs store the bytes downloaded (at most
 * MAX_MANIFEST_BYTES); earlier agents stored the manifest pretty-printed, which can take a few times
 * more. Such a file still loads if its compact JSON is within MAX_MANIFEST_BYTES.
 */
const MAX_STORED_MANIFEST_BYTES = 4 * MAX_MANIFEST_BYTES;

export interface InstalledModel {
  artifactId: string;
  manifest: Manifest;
  onnxPath: string;
}

/** The session source of an installed model: its model.onnx and the SHA-256 its signed manifest names. */
export function onnxSource(model: InstalledModel): OnnxSource {
  return { artifactId: model.artifactId, onnxPath: model.onnxPath, onnxSha256: model.manifest.files[ONNX_FILE]!.sha256 };
}

/**
 * Verified models on disk, one immutable directory per artifact id (manifest.json + model.onnx,
 * and signer.json for a model signed by a key other than the server's).
 * A directory appears by a single rename of a fully written, fsynced staging directory, so it is
 * either complete or absent. Slots (state.json) refer to models by artifact id.
 */
export class ModelStore {
  constructor(readonly dataDir: DataDir) {}

  /**
   * Moves a verified download into the store, with `signer` (the assignment's endorsement of the
   * manifest's signer key) when the manifest is not signed by `serverKey`. The manifest is stored
   * as the exact bytes downloaded and verified: never larger than the download's limit, which every
   * later load applies again. If the artifact's directory is already there and still verifies, the
   * download is dropped; a directory that no longer does (changed or damaged on disk, its
   * endorsement lost) is replaced, never trusted.
   */
  async install({ manifest, bytes }: VerifiedManifest, verifiedOnnx: string, serverKey: KeyObject, signer?: Signer): Promise<InstalledModel> {
    const id = artifactId(manifest);
    // The bytes must be the manifest's own (the fetcher's contract): a mismatch would install a
    // model that fails every later load.
    const stored = bytes.length <= MAX_MANIFEST_BYTES ? parseManifestBytes(bytes) : undefined;
    if (!stored || 'problem' in stored || artifactId(stored.manifest) !== id) throw new Error(`manifest bytes to store for ${id} are not that manifest`);
    const target = this.dataDir.modelDir(id);
    await mkdir(this.dataDir.modelsDir, { recursive: true });
    const present = await this.loadVerified(id, serverKey);
    if (!('failure' in present)) {
      await rm(verifiedOnnx, { force: true });
      return present;
    }
    if (await exists(target)) {
      // Renamed away first, so the store never shows a half-removed directory under the id.
      const aside = join(this.dataDir.modelsDir, `.replaced-${id}-${Date.now()}`);
      await rename(target, aside);
      await rm(aside, { recursive: true, force: true });
    }
    const staging = join(this.dataDir.modelsDir, `.staging-${id}`);
    await rm(staging, { recursive: true, force: true });
    await mkdir(staging);
    await writeNewFileSynced(join(staging, MANIFEST_FILE), bytes);
    const serverSigned = manifest.signature === undefined || manifest.signature.keyId === keyId(serverKey);
    if (signer && !serverSigned) await writeNewFileSynced(join(staging, SIGNER_FILE), `${JSON.stringify(signer)}\n`);
    await rename(verifiedOnnx, join(staging, ONNX_FILE));
    await fsyncDirectory(staging);
    crashPoint('install:before-rename');
    await rename(staging, target);
    await fsyncDirectory(this.dataDir.modelsDir);
    return { artifactId: id, manifest, onnxPath: join(target, ONNX_FILE) };
  }

  async has(id: string): Promise<boolean> {
    return exists(join(this.dataDir.modelDir(id), ONNX_FILE));
  }

  /**
   * Re-verifies an installed model (artifact id, model.onnx size and sha256, and the signature:
   * with the pinned server key, or with the signer key the server endorsed in the model's
   * signer.json, itself checked with the pinned key) before it is loaded; a failure is a one-line
   * reason. A missing or damaged signer.json fails like a bad signature.
   */
  async loadVerified(id: string, serverKey: KeyObject): Promise<InstalledModel | { failure: string }> {
    const checked = await this.#checkFiles(id);
    if ('failure' in checked) return checked;
    const signatureFailure = verifyManifestForDevice(checked.manifest, id, serverKey, await this.#readSigner(id));
    if (signatureFailure) return { failure: `${this.dataDir.modelDir(id)}: ${signatureFailure}` };
    return checked;
  }

  /** The model's signer.json as JSON: undefined when there is none, null when it cannot be read or parsed (which fails verification). */
  async #readSigner(id: string): Promise<unknown> {
    let text: string;
    try {
      // Not a regular file (a FIFO would block the start for good) or implausibly large: unusable.
      text = await readRegularFile(join(this.dataDir.modelDir(id), SIGNER_FILE), MAX_SIGNER_FILE_BYTES);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : null;
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return null;
    }
  }

  /** Whether the model directory of `id` holds a manifest of that artifact id and the model.onnx it lists (size and sha256). */
  async #checkFiles(id: string): Promise<InstalledModel | { failure: string }> {
    const dir = this.dataDir.modelDir(id);
    let manifest: Manifest;
    try {
      manifest = await readManifest(dir, MAX_STORED_MANIFEST_BYTES);
    } catch (error) {
      return { failure: errorMessage(error) };
    }
    // A pretty-printed manifest of an earlier agent may take more than MAX_MANIFEST_BYTES on disk;
    // as downloaded (compact) it never did. (A file within the limit is what was downloaded.)
    const manifestPath = join(dir, MANIFEST_FILE);
    const onDisk = (await stat(manifestPath).catch(() => undefined))?.size ?? 0;
    const compact = onDisk > MAX_MANIFEST_BYTES ? Buffer.byteLength(JSON.stringify(manifest)) : onDisk;
    if (compact > MAX_MANIFEST_BYTES) return { failure: `${manifestPath}: ${compact} bytes as compact JSON, more than a manifest can be (${MAX_MANIFEST_BYTES})` };
    if (artifactId(manifest) !== id) return { failure: `${dir}: manifest does not match its artifact id` };
    const onnxPath = join(dir, ONNX_FILE);
    const expected = manifest.files[ONNX_FILE]!;
    // A file that cannot be read (no permission, EIO from a worn SD card) fails verification like
    // a damaged one: the agent falls back to another model instead of stopping.
    let sha256: string;
    try {
      const info = await stat(onnxPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      });
      const size = info?.size;
      if (size !== expected.bytes) return { failure: `${onnxPath}: ${size === undefined ? 'missing' : `size ${size}, expected ${expected.bytes}`}` };
      sha256 = await sha256OfFile(onnxPath);
    } catch (error) {
      return { failure: describeFileError(onnxPath, error) };
    }
    if (sha256 !== expected.sha256) return { failure: `${onnxPath}: sha256 mismatch` };
    return { artifactId: id, manifest, onnxPath };
  }

  /**
   * Deletes partial downloads untouched for `maxIdleMs`: one an assignment still needs is resumed
   * (and so touched) long before; older ones were given up (a full disk, a withdrawn assignment)
   * and would otherwise stay for ever. Returns the names removed. With `onCleanupFailure`, one that
   * cannot be removed (a read-only disk) is passed to it and the sweep goes on; without it, thrown.
   */
  async removeStaleDownloads(maxIdleMs: number, now: Date, onCleanupFailure?: CleanupFailure): Promise<string[]> {
    const dir = this.dataDir.downloadsDir;
    const removed: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith('.part')) continue;
      const info = await stat(join(dir, name)).catch(() => undefined);
      if (!info?.isFile() || now.getTime() - info.mtimeMs <= maxIdleMs) continue;
      let failed = false;
      await removeLeftover(join(dir, name), onCleanupFailure && ((path, error) => ((failed = true), onCleanupFailure(path, error))));
      if (!failed) removed.push(name);
    }
    return removed;
  }

  /**
   * Deletes every partial download but `keep`'s. The agent downloads one model at a time, for the
   * assignment it holds now; the others belong to assignments since replaced (or failed for a full
   * disk) and would hold the space the new download needs. Without `keep`, every partial download
   * goes (the one download failed for want of space). Returns the names removed.
   */
  async removeOtherDownloads(keep?: string): Promise<string[]> {
    const dir = this.dataDir.downloadsDir;
    const keepName = keep === undefined ? undefined : basename(this.dataDir.partFile(keep));
    const removed: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith('.part') || name === keepName) continue;
      // recursive: a directory by that name (not the agent's) would otherwise fail every download.
      await rm(join(dir, name), { force: true, recursive: true });
      removed.push(name);
    }
    return removed;
  }

  /** The ids of the models installed (a staging directory among them is harmless: it is only kept longer). */
  async installedIds(): Promise<string[]> {
    return (await readdir(this.dataDir.modelsDir).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{64}$/.test(name));
  }

  /**
   * Deletes models no slot refers to and leftover staging directories. With `onCleanupFailure`, one
   * that cannot be removed (a read-only disk) is passed to it and the others still go; without it,
   * the first failure is thrown.
   */
  async collectGarbage(keep: ReadonlySet<string>, onCleanupFailure?: CleanupFailure): Promise<void> {
    const entries = await readdir(this.dataDir.modelsDir).catch(() => [] as string[]);
    await Promise.all(entries.filter((name) => !keep.has(name)).map((name) => removeLeftover(join(this.dataDir.modelsDir, name), onCleanupFailure)));
  }
}


async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
