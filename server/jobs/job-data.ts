import { readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { ServiceError } from '../app/service-error.ts';
import type { PruneJobRequest, PruneRequestFields } from './prune-job-request.ts';

/**
 * The CSV text of a job's data set. Server-side paths must resolve (symlinks included) to a
 * regular file inside `dataRoot`; without a data root they are refused.
 */
export async function readJobData(
  data: PruneJobRequest['data'],
  dataRoot: string | undefined,
  maxBytes: number,
  fields: Pick<PruneRequestFields, 'csv' | 'path'>,
): Promise<{ text: string; source: string }> {
  if ('csv' in data) return { text: data.csv, source: fields.csv };
  if (!dataRoot) throw new ServiceError('bad_request', `${fields.path}: server-side data paths are disabled (start the server with --data-root)`);
  const root = await realpath(dataRoot).catch(() => {
    throw new ServiceError('bad_request', `${fields.path}: the server's --data-root ${dataRoot} does not exist`);
  });
  const requested = resolve(root, data.path);
  const real = await realpath(requested).catch(() => {
    throw new ServiceError('bad_request', `${fields.path}: no such file ${JSON.stringify(data.path)} under the data root`);
  });
  const inside = relative(root, real);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
    throw new ServiceError('bad_request', `${fields.path}: ${JSON.stringify(data.path)} is outside the server's data root`);
  }
  const info = await stat(real);
  if (!info.isFile()) throw new ServiceError('bad_request', `${fields.path}: ${JSON.stringify(data.path)} is not a regular file`);
  if (info.size > maxBytes) throw new ServiceError('payload_too_large', `${fields.path}: the file exceeds ${maxBytes} bytes`);
  return { text: await readFile(real, 'utf8'), source: data.path };
}
