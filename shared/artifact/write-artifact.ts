import { randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { tf } from '../model/tfjs-backend.ts';
import { flopsPerSample, layerSizes, parameterCount, validateNetwork, type DenseNetwork } from '../model/dense-network.ts';
import { UserError, describeZodError, errorMessage } from '../util/errors.ts';
import { sha256Hex } from './digest.ts';
import { MANIFEST_FILE, ManifestSchema, ONNX_FILE, TFJS_DIR, TFJS_SCALING_JSON, type Manifest } from './manifest.ts';
import { exportOnnx } from './onnx-export.ts';
import { signManifest } from './signature.ts';
import { encodeScaling, encodeTfjsModel } from './tfjs-files.ts';
import { holdsArtifact } from './artifact-destination.ts';
import { encodeTrainingRecord, TRAINING_FILE, type TrainingRecord } from './training-record.ts';
import { FLEETPRUNE_VERSION } from '../cli/version.ts';
import { buildCommit } from '../cli/build-commit.ts';

/** model.onnx's producer_version: fleetprune's version, with the checkout's commit as semver build metadata (`0.1.0+33cf45dc3769`). */
function producerVersion(): string {
  const commit = buildCommit();
  return commit ? `${FLEETPRUNE_VERSION}+${commit.slice(0, 12)}` : FLEETPRUNE_VERSION;
}
import { replaceInPlace } from './replace-in-place.ts';
import { fsyncDirectory, writeNewFileSynced } from '../util/atomic-file.ts';

export { assertArtifactDestination } from './artifact-destination.ts';

/** What the caller describes; `architecture` and `files` are computed and `signature` is made here. */
export type ManifestInput = Omit<Manifest, 'architecture' | 'files' | 'signature'>;

export interface WriteArtifactInput {
  network: DenseNetwork;
  /** The same model as `network`, as tfjs (on standardized inputs). */
  tfjsModel: tf.LayersModel;
  manifest: ManifestInput;
  /** training.json (TRAINING_FILE): what trained the model; listed in the manifest, so signed with it. */
  training?: TrainingRecord;
  /** Signs the manifest; without it the artifact is written unsigned and fails verification. */
  privateKey?: KeyObject;
  /**
   * Called with the staging directory once the artifact's files are in it, just before it is
   * moved into place: what goes beside the artifact (prune's general/ and report.json) lands in
   * the same move, so a failure writing them leaves `dir` as it was.
   */
  beforeMove?: (staging: string) => Promise<void>;
}

/** Error codes that mean "this location cannot be written", reported as a UserError naming the path. */
const LOCATION_ERRORS = new Set(['EACCES', 'EEXIST', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'ENOSPC', 'EDQUOT', 'ENAMETOOLONG']);

/**
 * Writes an artifact directory (manifest.json, model.onnx, tfjs/model.json, tfjs/weights.bin,
 * tfjs/scaling.json, and training.json when given) and returns its manifest.
 *
 * The files are built and fsynced in a sibling staging directory (`${dir}.tmp-<random>`), then
 * renamed into place, so `dir` never holds a partial artifact. If `dir` does not exist or is an
 * empty directory, it is replaced by a single rename. If it holds an artifact (a manifest.json
 * that parses as one, and nothing but the artifact's files and what prune writes beside them:
 * report.json, general/; see holdsArtifact), the old directory is moved aside, the new one renamed
 * in, and the old one deleted, report.json and general/ included. Any other existing `dir` (a
 * file, a directory without manifest.json, or one whose manifest.json is someone else's or which
 * holds other files) is left untouched and a UserError is thrown: deleting it would lose them.
 *
 * A `dir` that cannot be replaced by a rename (a mount point, such as a Docker volume) keeps its
 * inode and has its entries replaced instead, with the same guarantees (see replaceInPlace). A
 * failure moving the artifact into place is a UserError too: the run's work is lost, but the
 * message says where and why (not an "internal error").
 */
export async function writeArtifact(dir: string, input: WriteArtifactInput): Promise<Manifest> {
  const { network, manifest: described, privateKey } = input;
  validateNetwork(network);
  checkDescription(described, network);

  const files = new Map<string, Uint8Array>([[ONNX_FILE, exportOnnx(network, { docString: `fleetprune artifact ${described.name}`, producerVersion: producerVersion() })]]);
  for (const [name, bytes] of await encodeTfjsModel(input.tfjsModel)) files.set(`${TFJS_DIR}/${name}`, bytes);
  files.set(`${TFJS_DIR}/${TFJS_SCALING_JSON}`, encodeScaling(network));
  if (input.training) files.set(TRAINING_FILE, encodeTrainingRecord(input.training));

  const parsed = ManifestSchema.safeParse({
    ...described,
    architecture: {
      layers: layerSizes(network),
      inputs: network.inputMean.length,
      params: parameterCount(network),
      flopsPerSample: flopsPerSample(network),
      activations: network.layers.map((layer) => layer.activation),
    },
    files: Object.fromEntries([...files].map(([path, bytes]) => [path, { sha256: sha256Hex(bytes), bytes: bytes.length }])),
  });
  if (!parsed.success) throw new UserError(`artifact manifest: ${describeZodError(parsed.error)}`);
  const manifest = privateKey ? signManifest(parsed.data, privateKey) : parsed.data;
  files.set(MANIFEST_FILE, new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));

  const staging = `${dir}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await mkdir(dirname(staging), { recursive: true });
    await mkdir(staging);
    try {
      await writeStaging(staging, files);
      await input.beforeMove?.(staging);
      await moveIntoPlace(staging, dir).catch((error: unknown) => {
        throw moveFailed(dir, error);
      });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== undefined && LOCATION_ERRORS.has(code)) {
      throw new UserError(`cannot write artifact to ${dir}: ${errorMessage(error)}`, { cause: error });
    }
    throw error;
  }
  return manifest;
}

/**
 * A failure to move the finished artifact into `dir`, as a one-line UserError naming it: a
 * location the user can fix (EACCES, ENOSPC) exits 2 like the other location errors, anything
 * else 1. A UserError (holdsArtifact's refusal) is passed on as it is.
 */
function moveFailed(dir: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (error instanceof UserError || code === undefined) return error;
  const exitCode = LOCATION_ERRORS.has(code) ? 2 : 1;
  return new UserError(`cannot move the artifact into ${dir}: ${errorMessage(error)}`, { exitCode, cause: error });
}

/** Mismatches between the description and the network are programming errors, not user input. */
function checkDescription(described: ManifestInput, network: DenseNetwork): void {
  const inputs = network.inputMean.length;
  if (described.features.length !== inputs) {
    throw new Error(`the manifest names ${described.features.length} features but the network takes ${inputs} inputs`);
  }
  const outputs = network.layers.at(-1)?.units;
  if (described.task === 'classification' && described.labels.length !== outputs) {
    throw new Error(`the manifest names ${described.labels.length} classes but the network has ${outputs} outputs`);
  }
}

async function writeStaging(staging: string, files: Map<string, Uint8Array>): Promise<void> {
  const dirs = new Set<string>([staging]);
  for (const [path, bytes] of files) {
    const target = join(staging, path);
    await mkdir(dirname(target), { recursive: true });
    dirs.add(dirname(target));
    await writeNewFileSynced(target, bytes);
  }
  for (const path of dirs) await fsyncDirectory(path);
}

async function moveIntoPlace(staging: string, dir: string): Promise<void> {
  // Checked again here, just before deleting: a caller's assertArtifactDestination may be minutes old.
  const previousArtifact = await holdsArtifact(dir);
  if (await isMountPoint(dir)) {
    await replaceInPlace(staging, dir);
  } else if (!previousArtifact) {
    // rename(2) atomically replaces a missing or empty directory.
    if (!(await renameUnlessInPlace(staging, dir))) await replaceInPlace(staging, dir);
  } else {
    const previous = `${dir}.old-${randomBytes(6).toString('hex')}`;
    if (!(await renameUnlessInPlace(dir, previous))) {
      await replaceInPlace(staging, dir);
    } else {
      try {
        await rename(staging, dir);
      } catch (error) {
        await rename(previous, dir);
        throw error;
      }
      await rm(previous, { recursive: true, force: true });
    }
  }
  await fsyncDirectory(dirname(dir));
}

/**
 * Errors of a rename involving a directory that only a move in place gets past: EBUSY for a mount
 * point on the same device as its parent (a bind mount; Docker's volumes often are), EXDEV for a
 * directory of an overlay file system's lower layer (one that came with a container's image).
 */
const IN_PLACE_ERRORS = new Set(['EBUSY', 'EXDEV']);

/** Renames `from` to `to`; false, having changed nothing, when the rename fails with one of IN_PLACE_ERRORS. */
async function renameUnlessInPlace(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (error) {
    if (IN_PLACE_ERRORS.has((error as NodeJS.ErrnoException).code ?? '')) return false;
    throw error;
  }
}

/** Whether `dir` is an existing directory on another device than its parent: the root of a mount, which no rename replaces. */
async function isMountPoint(dir: string): Promise<boolean> {
  const [own, parent] = await Promise.all([stat(dir).catch(() => undefined), stat(dirname(dir)).catch(() => undefined)]);
  return own !== undefined && parent !== undefined && own.dev !== parent.dev;
}
