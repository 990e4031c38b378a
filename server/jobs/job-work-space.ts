import { mkdir, stat, statfs } from 'node:fs/promises';
import { isAbsolute, parse } from 'node:path';
import type { PruneOptions } from '../pruning/options.ts';
import { ServiceError } from '../app/service-error.ts';

/** Room kept beyond the estimate: manifests, report.json, staging directories, the store's own writes. */
const MARGIN_BYTES = 1024 * 1024;

/**
 * A generous estimate of the disk a job's outputs take: the general model's weights twice (tfjs
 * weights.bin and model.onnx, 4 bytes each), the pruned model at most as much again, and all of
 * it once more as blobs in the artifact store (the same data directory).
 */
export function jobOutputBytes(options: Pick<PruneOptions, 'layers' | 'units'>, inputs: number): number {
  const { layers, units } = options;
  // Hidden layers with their biases, and an output layer as wide as a hidden one (an over-estimate).
  const params = (inputs + 1) * units + (layers - 1) * (units + 1) * units + (units + 1) * units;
  return params * 4 * 2 * 2 * 2 + MARGIN_BYTES;
}

/**
 * Makes the job's work directory and checks its file system has room for the job's outputs, so a
 * full or unwritable --data-dir fails the job at once instead of after its training, at export.
 * The messages name --data-dir, not the path: the API's callers do not see the server's paths.
 */
export async function prepareWorkSpace(dir: string, neededBytes: number, blobRoot?: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new ServiceError('unavailable', `the server cannot write job output in its --data-dir's jobs/ directory (${code}); nothing was trained`, { cause: error });
  }
  const fs = await statfs(dir).catch(() => null);
  if (fs === null) return;
  const free = fs.bavail * fs.bsize;
  if (free < neededBytes) {
    throw new ServiceError(
      'unavailable',
      `the server's --data-dir has ${megabytes(free)} free${await otherMount(dir, blobRoot) ? ' in its jobs/ directory' : ''}, and this job's models need about ${megabytes(neededBytes)}: free disk space on the server, or use fewer --units or --layers; nothing was trained`,
    );
  }
  // The blob store on a file system of its own (a mount at --data-dir's blobs/): the models' copies
  // (half the estimate) land there when the job registers them, after the whole training.
  if (blobRoot === undefined || !(await otherMount(dir, blobRoot))) return;
  const blobFs = await statfs(blobRoot).catch(() => null);
  const blobFree = blobFs === null ? Number.POSITIVE_INFINITY : blobFs.bavail * blobFs.bsize;
  if (blobFree < neededBytes / 2) {
    throw new ServiceError(
      'unavailable',
      `the server's blob store (--data-dir's blobs/) has ${megabytes(blobFree)} free, and this job's models need about ${megabytes(neededBytes / 2)} there: free disk space on the server, or use fewer --units or --layers; nothing was trained`,
    );
  }
}

/** Whether `blobRoot` is on another file system than `dir` (false when either cannot be read). */
async function otherMount(dir: string, blobRoot: string | undefined): Promise<boolean> {
  if (blobRoot === undefined) return false;
  const [a, b] = await Promise.all([stat(dir).catch(() => null), stat(blobRoot).catch(() => null)]);
  return a !== null && b !== null && a.dev !== b.dev;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * A job's failure as the API shows it (GET /api/jobs is a viewer's to read): the server's own
 * directories in it (the file system's messages and writeArtifact's name the paths they failed
 * on) replaced by the option that set them, so a failure reads `cannot write artifact to
 * <--data-dir>/jobs/…/artifact: …`. `places` pairs a path with what it is shown as; the longest
 * is replaced first. The full message goes to the server's log.
 */
export function withoutServerPaths(message: string, places: readonly (readonly [path: string | undefined, shown: string])[]): string {
  // Absolute paths only (not the root): a relative one names nothing of the server's, and its text
  // ("data") could be any word of the message.
  const known = places.filter((place): place is readonly [string, string] => place[0] !== undefined && isAbsolute(place[0]) && place[0] !== parse(place[0]).root);
  known.sort((a, b) => b[0].length - a[0].length);
  let out = message;
  for (const [path, shown] of known) out = out.split(path.replace(/\/+$/, '')).join(shown);
  return out;
}

