import type { KeyObject } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { MANIFEST_FILE, ONNX_FILE, artifactId, type Manifest } from '../shared/artifact/manifest.ts';
import { readManifest } from '../shared/artifact/read-artifact.ts';
import { verifyManifestSignature } from '../shared/artifact/signature.ts';
import { fsyncDirectory } from '../shared/util/atomic-file.ts';
import { errorMessage } from '../shared/util/errors.ts';
import { sha256OfFile } from './artifact-fetcher.ts';
import { crashPoint } from './crash-points.ts';
import type { DataDir } from './data-dir.ts';
import type { OnnxSource } from './verified-onnx.ts';

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
 * Verified models on disk, one immutable directory per artifact id (manifest.json + model.onnx).
 * A directory appears by a single rename of a fully written, fsynced staging directory, so it is
 * either complete or absent. Slots (state.json) refer to models by artifact id.
 */
export class ModelStore {
  constructor(readonly dataDir: DataDir) {}

  /**
   * Moves a verified download into the store. If the artifact's directory is already there and
   * still holds exactly this manifest (signature included) and model.onnx, the download is
   * dropped; a directory that no longer does (changed or damaged on disk) is replaced, never trusted.
   */
  async install(manifest: Manifest, verifiedOnnx: string): Promise<InstalledModel> {
    const id = artifactId(manifest);
    const target = this.dataDir.modelDir(id);
    await mkdir(this.dataDir.modelsDir, { recursive: true });
    const present = await this.#checkFiles(id);
    if (!('failure' in present) && present.manifest.signature?.value === manifest.signature?.value) {
      await rm(verifiedOnnx, { force: true });
      return { artifactId: id, manifest, onnxPath: join(target, ONNX_FILE) };
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
    const handle = await open(join(staging, MANIFEST_FILE), 'wx');
    try {
      await handle.writeFile(`${JSON.stringify(manifest, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
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
   * Re-verifies an installed model (signature with the pinned key, artifact id, model.onnx size
   * and sha256) before it is loaded; a failure is a one-line reason.
   */
  async loadVerified(id: string, publicKey: KeyObject): Promise<InstalledModel | { failure: string }> {
    const checked = await this.#checkFiles(id);
    if ('failure' in checked) return checked;
    const signatureFailure = verifyManifestSignature(checked.manifest, publicKey);
    if (signatureFailure) return { failure: `${this.dataDir.modelDir(id)}: ${signatureFailure}` };
    return checked;
  }

  /** Whether the model directory of `id` holds a manifest of that artifact id and the model.onnx it lists (size and sha256). */
  async #checkFiles(id: string): Promise<InstalledModel | { failure: string }> {
    const dir = this.dataDir.modelDir(id);
    let manifest: Manifest;
    try {
      manifest = await readManifest(dir);
    } catch (error) {
      return { failure: errorMessage(error) };
    }
    if (artifactId(manifest) !== id) return { failure: `${dir}: manifest does not match its artifact id` };
    const onnxPath = join(dir, ONNX_FILE);
    const expected = manifest.files[ONNX_FILE]!;
    const size = (await stat(onnxPath).catch(() => undefined))?.size;
    if (size !== expected.bytes) return { failure: `${onnxPath}: ${size === undefined ? 'missing' : `size ${size}, expected ${expected.bytes}`}` };
    if ((await sha256OfFile(onnxPath)) !== expected.sha256) return { failure: `${onnxPath}: sha256 mismatch` };
    return { artifactId: id, manifest, onnxPath };
  }

  /**
   * Deletes partial downloads untouched for `maxIdleMs`: one an assignment still needs is resumed
   * (and so touched) long before; older ones were given up (a full disk, a withdrawn assignment)
   * and would otherwise stay for ever. Returns the names removed.
   */
  async removeStaleDownloads(maxIdleMs: number, now: Date): Promise<string[]> {
    const dir = this.dataDir.downloadsDir;
    const removed: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith('.part')) continue;
      const info = await stat(join(dir, name)).catch(() => undefined);
      if (!info?.isFile() || now.getTime() - info.mtimeMs <= maxIdleMs) continue;
      await rm(join(dir, name), { force: true });
      removed.push(name);
    }
    return removed;
  }

  /**
   * Deletes every partial download but `keep`'s. The agent downloads one model at a time, for the
   * assignment it holds now; the others belong to assignments since replaced (or failed for a full
   * disk) and would hold the space the new download needs. Returns the names removed.
   */
  async removeOtherDownloads(keep: string): Promise<string[]> {
    const dir = this.dataDir.downloadsDir;
    const keepName = basename(this.dataDir.partFile(keep));
    const removed: string[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith('.part') || name === keepName) continue;
      await rm(join(dir, name), { force: true });
      removed.push(name);
    }
    return removed;
  }

  /** Deletes models no slot refers to and leftover staging directories. */
  async collectGarbage(keep: ReadonlySet<string>): Promise<void> {
    const entries = await readdir(this.dataDir.modelsDir).catch(() => [] as string[]);
    await Promise.all(entries.filter((name) => !keep.has(name)).map((name) => rm(join(this.dataDir.modelsDir, name), { recursive: true, force: true })));
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined)) !== undefined;
}
