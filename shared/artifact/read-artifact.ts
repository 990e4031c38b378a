import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError, describeZodError, errorMessage } from '../util/errors.ts';
import { describeDataProblem, untrustedDataProblem } from '../util/untrusted-data.ts';
import { MANIFEST_FILE, ManifestSchema, type Manifest } from './manifest.ts';

/** Reads and validates `dir/manifest.json`; a UserError naming the file when it is missing or invalid. */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing (not a fleetprune artifact)' : errorMessage(error);
    throw new UserError(`${path}: ${reason}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UserError(`${path}: not valid JSON (${errorMessage(error)})`, { cause: error });
  }
  // The schema would drop a `__proto__` key silently (a `files` entry, say) before the signature is checked.
  const problem = untrustedDataProblem(json);
  if (problem) throw new UserError(`${path}: ${describeDataProblem(problem, '')}`);
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) throw new UserError(`${path}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
