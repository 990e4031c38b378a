import type { KeyObject } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { UserError, errorMessage } from '../util/errors.ts';
import { isInside } from '../util/path-inside.ts';
import { printable } from '../util/printable.ts';
import { sha256Hex } from './digest.ts';
import { ONNX_FILE, artifactId, type Manifest } from './manifest.ts';
import { TFJS_MODEL_JSON_PATH, onnxArchitectureProblem, tfjsArchitectureProblem } from './architecture-check.ts';
import { lineageProblems } from './lineage-check.ts';
import { GENERAL_SUBDIR } from './prune-output-names.ts';
import { readManifest } from './read-artifact.ts';
import { verifyManifestSignature } from './signature.ts';

export interface VerifyResult {
  ok: boolean;
  /** One line each, naming what failed: `model.onnx: sha256 mismatch (expected abc…, got def…)`. */
  failures: string[];
  /** Present whenever manifest.json parsed, even if other checks failed. */
  manifest?: Manifest;
}

/**
 * Checks an artifact directory: manifest.json parses against the schema (which also rejects
 * unsafe file paths), every listed file exists with the listed size and SHA-256, model.onnx and
 * the tfjs model hold the layers the manifest's architecture lists, its lineage is one prune
 * writes (lineageProblems), and the signature was made by
 * `publicKey` over the manifest. Files the manifest does not list
 * (report.json, a lineage parent's directory) are ignored.
 */
export async function verifyArtifact(dir: string, publicKey: KeyObject): Promise<VerifyResult> {
  let manifest: Manifest;
  try {
    manifest = await readManifest(dir);
  } catch (error) {
    if (error instanceof UserError) return { ok: false, failures: [error.message] };
    throw error;
  }
  const fileFailures = await checkArtifactFiles(dir, manifest);
  const failures = [...fileFailures, ...(await modelContentProblems(dir, manifest, fileFailures)), ...lineageProblems(manifest.lineage), verifyManifestSignature(manifest, publicKey)].filter((failure) => failure !== null);
  return { ok: failures.length === 0, failures, manifest };
}

/**
 * That model.onnx and the tfjs model hold the network the manifest's architecture describes, as
 * the registry checks at registration (architecture-check.ts): each file read only when it passed
 * its hash check (`fileFailures` names those that did not).
 */
async function modelContentProblems(dir: string, manifest: Manifest, fileFailures: readonly string[]): Promise<string[]> {
  const intact = (path: string) => manifest.files[path] !== undefined && !fileFailures.some((failure) => failure.startsWith(`${path}:`));
  const problems: (string | null)[] = [];
  if (intact(ONNX_FILE)) problems.push(onnxArchitectureProblem(await readFile(join(dir, ONNX_FILE)), manifest));
  if (intact(TFJS_MODEL_JSON_PATH)) problems.push(tfjsArchitectureProblem(await readFile(join(dir, TFJS_MODEL_JSON_PATH), 'utf8'), manifest));
  return problems.filter((problem) => problem !== null);
}

export interface PruneOutputVerifyResult extends VerifyResult {
  /** The parent in DIR/general, when DIR holds one (its failures are in `failures`, prefixed `general/`). */
  parent?: { manifest?: Manifest };
}

/**
 * verifyArtifact over `dir`, and over the parent beside it in DIR/general when there is one (a
 * general/manifest.json), as `fleetprune prune` writes it and `models push` registers it with its
 * child: its files and signature (by the same key), and that it is the parent the artifact's
 * lineage names. The parent's failures are prefixed `general/`.
 */
export async function verifyPruneOutput(dir: string, publicKey: KeyObject): Promise<PruneOutputVerifyResult> {
  const result: PruneOutputVerifyResult = await verifyArtifact(dir, publicKey);
  const parentDir = join(dir, GENERAL_SUBDIR);
  // Missing only when the system says so: a general/ it cannot read (no permission) is verified, and fails naming why.
  if (await missing(join(parentDir, 'manifest.json'))) {
    // A general/ beside an artifact that names a parent is that parent: without its manifest nothing of it can be checked.
    if ((await missing(parentDir)) || !result.manifest?.lineage.parentSha256) return result;
    const failure = `${GENERAL_SUBDIR}/manifest.json: missing, so the parent in ${GENERAL_SUBDIR}/ cannot be checked (remove ${GENERAL_SUBDIR}/ to verify the artifact alone)`;
    return { ...result, ok: false, failures: [...result.failures, failure] };
  }
  // A general/ that is a symlink out of DIR is not part of it, as a listed file would not be.
  const [root, parentReal] = await Promise.all([realpath(dir).catch(() => null), realpath(parentDir).catch(() => null)]);
  if (root !== null && parentReal !== null && !isInside(root, parentReal)) {
    const failure = `${GENERAL_SUBDIR}/: a symlink to ${printable(parentReal)}, outside the artifact directory (copy the parent in)`;
    return { ok: false, failures: [...result.failures, failure], manifest: result.manifest };
  }
  const parent = await verifyArtifact(parentDir, publicKey);
  // Relative to DIR, as the artifact's own failures are: one that names the parent's path (its manifest's) is named from general/.
  const failures = parent.failures.map((failure) => `${GENERAL_SUBDIR}/${failure.startsWith(`${parentDir}${sep}`) ? failure.slice(parentDir.length + 1) : failure}`);
  const expected = result.manifest?.lineage.parentSha256;
  if (parent.manifest && result.manifest) {
    const actual = artifactId(parent.manifest);
    if (expected === null) failures.push(`${GENERAL_SUBDIR}/: holds artifact ${abbreviate(actual)}, but this artifact names no parent`);
    else if (actual !== expected) failures.push(`${GENERAL_SUBDIR}/: holds artifact ${abbreviate(actual)}, not this artifact's parent (${abbreviate(expected!)})`);
  }
  return { ok: result.ok && failures.length === 0, failures: [...result.failures, ...failures], manifest: result.manifest, parent: { manifest: parent.manifest } };
}

/** Whether nothing is at `path` (ENOENT, ENOTDIR); false when something is, readable or not. */
async function missing(path: string): Promise<boolean> {
  return stat(path).then(
    () => false,
    (error: NodeJS.ErrnoException) => error.code === 'ENOENT' || error.code === 'ENOTDIR',
  );
}

/**
 * Checks that every file `manifest` lists is in `dir` with the listed size and SHA-256; one line
 * per file that is not, naming it (`model.onnx: missing`). Empty when all are intact.
 */
export async function checkArtifactFiles(dir: string, manifest: Manifest): Promise<string[]> {
  const root = await realpath(dir).catch(() => null);
  const failures = await Promise.all(Object.entries(manifest.files).map(([path, expected]) => checkFile(dir, root, path, expected)));
  return failures.filter((failure) => failure !== null);
}

async function checkFile(dir: string, root: string | null, path: string, expected: Manifest['files'][string]): Promise<string | null> {
  let bytes: Buffer;
  try {
    // A file that is a symlink (or under a symlinked directory) leading out of the artifact is
    // not part of it: a copy of the directory (cp -r, tar, an upload of the directory) would
    // carry a link that dangles or reads something else, and the verified bytes live where the
    // artifact's owner does not control them. Where it leads is shown escaped: a target's name is
    // the artifact's choice, and a newline in it would forge a line of verify's output.
    const real = await realpath(join(dir, path));
    if (root !== null && !isInside(root, real)) return `${path}: a symlink to ${printable(real)}, outside the artifact directory (copy the file in)`;
    // Sized before it is read: a FIFO or device in a file's place would block the read or never end
    // it, and a file of the wrong size is not worth reading whole.
    const info = await stat(join(dir, path));
    if (!info.isFile()) return `${path}: not a regular file`;
    if (info.size !== expected.bytes) return `${path}: size mismatch (expected ${expected.bytes} bytes, got ${info.size})`;
    bytes = await readFile(join(dir, path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return `${path}: ${code === 'ENOENT' ? 'missing' : `unreadable (${printable(errorMessage(error))})`}`;
  }
  if (bytes.length !== expected.bytes) return `${path}: size mismatch (expected ${expected.bytes} bytes, got ${bytes.length})`;
  const actual = sha256Hex(bytes);
  if (actual !== expected.sha256) return `${path}: sha256 mismatch (expected ${abbreviate(expected.sha256)}, got ${abbreviate(actual)})`;
  return null;
}

function abbreviate(hex: string): string {
  return `${hex.slice(0, 12)}…`;
}
