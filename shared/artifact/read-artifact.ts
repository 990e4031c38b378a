import { isUtf8 } from 'node:buffer';
import { readFile, realpath, stat } from 'node:fs/promises';
import { describeFsError } from '../util/fs-checks.ts';
import { join } from 'node:path';
import { UserError, describeZodError, errorMessage, oneLineMessage } from '../util/errors.ts';
import { duplicateJsonKey } from '../util/duplicate-keys.ts';
import { isInside } from '../util/path-inside.ts';
import { printable } from '../util/printable.ts';
import { describeDataProblem, untrustedDataProblem } from '../util/untrusted-data.ts';
import { MANIFEST_FILE, MAX_MANIFEST_BYTES, ManifestSchema, type Manifest } from './manifest.ts';

/**
 * `dir`, given as an artifact directory (verify, models push), is a directory: a report.json or
 * model.onnx given in its place otherwise read as `…/manifest.json: ENOTDIR: not a directory, realpath …`.
 */
export async function assertArtifactDirectory(dir: string): Promise<void> {
  if (dir === '') throw new UserError("the artifact directory's path is empty");
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${dir}: no such artifact directory`, { cause: error });
    if (code === 'ENOTDIR') throw new UserError(`${dir}: not a directory (a parent is a file; give the artifact directory, the one holding manifest.json)`, { cause: error });
    throw new UserError(`${dir}: cannot read the artifact directory (${describeFsError(error)})`, { cause: error });
  }
  if (!info.isDirectory()) throw new UserError(`${dir}: not a directory (give the artifact directory, the one holding manifest.json)`);
}

/**
 * Reads and validates `dir/manifest.json`; a UserError naming the file when it is missing or
 * invalid, larger than `maxBytes`, or a symlink out of `dir`.
 */
export async function readManifest(dir: string, maxBytes = MAX_MANIFEST_BYTES): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let bytes: Buffer;
  try {
    // The rule for the files it lists (checkArtifactFiles): a manifest.json that is a symlink out
    // of the artifact is not part of it, and a copy of the directory would carry a link that
    // dangles or reads another manifest. The resolved path is read, not the link again.
    const [root, real] = await Promise.all([realpath(dir), realpath(path)]);
    if (!isInside(root, real)) throw new UserError(`${path}: a symlink to ${printable(real)}, outside the artifact directory (copy the file in)`);
    // A FIFO or device in its place would block a plain read; a huge file would fill memory.
    const info = await stat(real);
    if (!info.isFile()) throw new UserError(`${path}: not a regular file`);
    if (info.size > maxBytes) throw new UserError(`${path}: ${info.size} bytes, more than a manifest can be (${maxBytes})`);
    bytes = await readFile(real);
  } catch (error) {
    if (error instanceof UserError) throw error;
    // The system's message names the resolved path, which may hold any name the artifact gave it.
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing (not a fleetprune artifact)' : printable(errorMessage(error));
    throw new UserError(`${path}: ${reason}`, { cause: error });
  }
  const parsed = parseManifestBytes(bytes);
  if ('problem' in parsed) throw new UserError(`${path}: ${parsed.problem}`);
  return parsed.manifest;
}

/**
 * parseManifestText for bytes read from a file or a download. A manifest is JSON, so UTF-8:
 * decoded as it is, another encoding's byte becomes U+FFFD without a word, and the manifest then
 * reads as a signature that does not match rather than as what it is.
 */
export function parseManifestBytes(bytes: Uint8Array): { manifest: Manifest } | { problem: string } {
  if (!isUtf8(bytes)) return { problem: 'not UTF-8 text (a manifest is JSON in UTF-8; was it re-saved in another encoding?)' };
  return parseManifestText(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
}

/**
 * Parses manifest.json text; else a one-line problem. Beyond the schema: no duplicate keys
 * (JSON.parse keeps the last, other parsers the first, so the signed manifest would read
 * differently to them), and no NUL or `__proto__` key, which the schema would drop silently
 * (a `files` entry, say) before the signature is checked.
 *
 * The problem quotes the manifest's own keys and values, which whoever made it chose: it comes
 * back escaped (printable), so a key holding a newline and `ok NAME ID` cannot forge a line of
 * `fleetprune verify`'s output, nor an escape sequence hide or rewrite the lines around it.
 */
export function parseManifestText(text: string): { manifest: Manifest } | { problem: string } {
  const problem = manifestProblem(text);
  return 'problem' in problem ? { problem: printable(problem.problem) } : problem;
}

function manifestProblem(text: string): { manifest: Manifest } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { problem: `not valid JSON (${oneLineMessage(errorMessage(error))})` };
  }
  const duplicate = duplicateJsonKey(text);
  if (duplicate !== null) return { problem: `duplicate key ${duplicate}` };
  const problem = untrustedDataProblem(json);
  if (problem) return { problem: describeDataProblem(problem, '') };
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) return { problem: describeZodError(parsed.error) };
  return { manifest: parsed.data };
}
