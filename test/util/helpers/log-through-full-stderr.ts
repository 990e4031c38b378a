/**
 * For test/util/log.test.ts: logs while every write to stderr fails (ENOSPC, as on a full disk),
 * then while it works again, and says on stdout what it did. argv[2]: how many lines to log while
 * stderr is "full".
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { createLogger } from '../../../shared/util/log.ts';

const realWriteSync = fs.writeSync;
const log = createLogger('full-stderr');
let refused = 0;
(fs as { writeSync: typeof fs.writeSync }).writeSync = ((fd: number, ...rest: unknown[]) => {
  if (fd === 2) {
    refused++;
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  }
  return (realWriteSync as (...args: unknown[]) => number)(fd, ...rest);
}) as typeof fs.writeSync;
syncBuiltinESMExports();
const whileFull = Number(process.argv[2]);
for (let i = 0; i < whileFull; i++) log.info({ i, pad: 'x'.repeat(200) }, 'while full');
(fs as { writeSync: typeof fs.writeSync }).writeSync = realWriteSync;
syncBuiltinESMExports();
log.info('room again');
process.stdout.write(`${JSON.stringify({ refused })}\n`);
