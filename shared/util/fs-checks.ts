import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { UserError, errorMessage } from './errors.ts';

/**
 * Fails fast, before any long work, when `dir` cannot be created or written (its parent too,
 * since artifacts are staged next to their final place and renamed into it).
 */
export async function assertWritableDirectory(dir: string, what = 'output directory'): Promise<void> {
  for (const target of [dirname(dir), dir]) {
    try {
      await mkdir(target, { recursive: true });
      const probe = join(target, `.fleetprune-write-check-${randomBytes(4).toString('hex')}`);
      await writeFile(probe, '');
      await rm(probe);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason = code === 'EACCES' || code === 'EPERM' || code === 'EROFS' ? 'permission denied' : errorMessage(error);
      throw new UserError(`cannot write ${what} ${dir}: ${reason}`);
    }
  }
}
