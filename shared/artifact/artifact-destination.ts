import type { Dirent } from 'node:fs';
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UserError, errorMessage, zodIssueMessage } from '../util/errors.ts';
import { MANIFEST_FILE, ManifestSchema, ONNX_FILE, TFJS_DIR, type Manifest } from './manifest.ts';
import { GENERAL_SUBDIR, REPORT_FILE } from './prune-output-names.ts';
import { IN_PLACE_LEFTOVER } from './replace-in-place.ts';
import { TRAINING_FILE } from './training-record.ts';

// Apart from writeArtifact (which loads TensorFlow.js), so that a CLI can check its --out early and cheaply.

/**
 * Where an artifact for `dir` is written: `dir` itself, or, when it is a symbolic link, the
 * directory it leads to. An artifact replaces its directory by renames, which would replace the
 * link itself (and fail, ENOTDIR, after the whole run, when it leads to an empty directory); the
 * link is kept and leads to the new artifact. A link leading nowhere is a UserError.
 */
export async function resolveArtifactDestination(dir: string): Promise<string> {
  const link = await lstat(dir).catch(() => undefined);
  if (!link?.isSymbolicLink()) return dir;
  try {
    return await realpath(dir);
  } catch (error) {
    throw new UserError(`cannot write artifact to ${dir}: it is a symbolic link that leads nowhere (${errorMessage(error).split(',')[0]})`, { cause: error });
  }
}

/**
 * Checks up front, before long work, that writeArtifact may write to `dir`: it is missing, an
 * empty directory, or an existing artifact. Anything else is a UserError naming it.
 */
export async function assertArtifactDestination(dir: string): Promise<void> {
  await holdsArtifact(dir);
  await assertNotPartOfArtifact(dir);
}

/**
 * A prune output's general/ is part of it (its pruned model's parent, checked as such): writing
 * an artifact there would replace the parent of another artifact.
 */
async function assertNotPartOfArtifact(dir: string): Promise<void> {
  if (basename(dir) === GENERAL_SUBDIR) {
    const parent = dirname(dir);
    const isArtifact = await holdsArtifact(parent).catch(() => false);
    if (isArtifact) throw new UserError(`cannot write artifact to ${dir}: it is the ${GENERAL_SUBDIR}/ of the artifact in ${parent}, and replacing it would break that artifact; choose another directory`);
  }
  // Deeper inside one (`--out NB/general/new`, `NB/tfjs/x`): the new directory became a foreign
  // file of that artifact, which then could not be written again in place.
  for (let ancestor = dirname(dir); ; ancestor = dirname(ancestor)) {
    const manifest = await stat(join(ancestor, MANIFEST_FILE)).catch(() => undefined);
    if (manifest?.isFile() && (await notAnArtifact(ancestor, true).catch(() => 'unreadable')) === undefined) {
      throw new UserError(`cannot write artifact to ${dir}: it is inside the artifact in ${ancestor}, and writing there would change that artifact; choose a directory outside it`);
    }
    if (dirname(ancestor) === ancestor) return;
  }
}

/**
 * False for a missing or empty directory, true for an artifact that writeArtifact may replace
 * (and so delete); a UserError for anything else.
 *
 * A manifest.json alone does not make a directory ours: plenty of other tools write one. It is
 * an artifact only if its manifest parses as an artifact manifest and it holds nothing but what
 * writeArtifact and prune write there (manifest.json, model.onnx, training.json, the tfjs/ files
 * the manifest lists, report.json, and general/, itself such an artifact). Anything else might be someone's
 * files, and replacing the directory would delete them.
 */
export async function holdsArtifact(dir: string): Promise<boolean> {
  const info = await stat(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!info) return false;
  if (!info.isDirectory()) throw new UserError(`cannot write artifact to ${dir}: it exists and is not a directory`);
  const entries = await readdir(dir);
  if (entries.length === 0) return false;
  const problem = await notAnArtifact(dir, true);
  if (problem) throw new UserError(`cannot write artifact to ${dir}: ${problem}; refusing to replace it`);
  return true;
}

/**
 * Why `dir` (a non-empty directory) is not an artifact writeArtifact may replace, or undefined if it is.
 *
 * A move in place (a mount point: replaceInPlace) that was killed leaves its hidden directories in
 * the artifact directory, and, killed while swapping entries, no manifest.json: the old one had
 * left, the new one not arrived. Such leftovers are ours and are replaced too, and so is a
 * directory without a manifest that holds them and nothing but artifact files and folders.
 */
async function notAnArtifact(dir: string, pruneOutput: boolean): Promise<string | undefined> {
  const all = await readdir(dir, { withFileTypes: true });
  const isLeftover = (entry: Dirent) => pruneOutput && entry.isDirectory() && IN_PLACE_LEFTOVER.test(entry.name);
  const entries = all.filter((entry) => !isLeftover(entry));
  const files = new Set([MANIFEST_FILE, ONNX_FILE, TRAINING_FILE, ...(pruneOutput ? [REPORT_FILE] : [])]);
  const dirs = new Set([TFJS_DIR, ...(pruneOutput ? [GENERAL_SUBDIR] : [])]);
  // lstat types (a symlink is neither): what is replaced must be exactly what we wrote.
  const ofAnArtifact = (entry: Dirent) => (files.has(entry.name) && entry.isFile()) || (dirs.has(entry.name) && entry.isDirectory());
  const manifestEntry = entries.find((entry) => entry.name === MANIFEST_FILE);
  if (!manifestEntry) {
    if (entries.length < all.length && entries.every(ofAnArtifact)) return undefined;
    return pruneOutput ? `it is a non-empty directory without ${MANIFEST_FILE}` : `it has no ${MANIFEST_FILE}`;
  }
  // Read only if a regular file: a FIFO would block the read for ever.
  if (!manifestEntry.isFile()) return `its ${MANIFEST_FILE} is not a regular file`;
  let manifest: Manifest;
  try {
    const parsed = ManifestSchema.safeParse(JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')));
    if (!parsed.success) {
      const [issue] = parsed.error.issues;
      return `its ${MANIFEST_FILE} is not a fleetprune artifact manifest (${issue!.path.join('.') || 'manifest'}: ${zodIssueMessage(issue!)})`;
    }
    manifest = parsed.data;
  } catch (error) {
    return `its ${MANIFEST_FILE} is not a fleetprune artifact manifest (${errorMessage(error).split('\n')[0]})`;
  }

  const foreign = entries.find((entry) => !ofAnArtifact(entry));
  if (foreign) return `it also holds ${JSON.stringify(foreign.name)}, which is not part of an artifact`;
  if (entries.some((entry) => entry.name === TFJS_DIR)) {
    for (const entry of await readdir(join(dir, TFJS_DIR), { withFileTypes: true })) {
      const path = `${TFJS_DIR}/${entry.name}`;
      if (!entry.isFile() || !(path in manifest.files)) return `it holds ${JSON.stringify(path)}, which its ${MANIFEST_FILE} does not list`;
    }
  }
  if (pruneOutput && entries.some((entry) => entry.name === GENERAL_SUBDIR)) {
    const general = await notAnArtifact(join(dir, GENERAL_SUBDIR), false);
    if (general) return `${GENERAL_SUBDIR}/ is not an artifact: ${general}`;
  }
  return undefined;
}
