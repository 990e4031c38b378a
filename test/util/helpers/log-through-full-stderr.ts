/**
 * For test/util/log.test.ts: logs while every write to stderr fails (ENOSPC, as on a full disk),
 * then while it works again, and says on stdout what it did. argv[2]: how many lines to log while
 * stderr is "full"; argv[3] 'partial': the first of them is written in part before the disk fills.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { createLogger } from '../../../shared/util/log.ts';

const realWriteSync = fs.writeSync;
const log = createLogger('full-stderr');
let refused = 0;
// argv[3] 'partial': the first write takes half its line (a disk's last blocks), as a real one may.
let partial = process.argv[3] === 'partial';
(fs as { writeSync: typeof fs.writeSync }).writeSync = ((fd: number, ...rest: unknown[]) => {
  if (fd === 2 && partial && Buffer.isBuffer(rest[0])) {
    partial = false;
    const bytes = rest[0];
    return realWriteSync(2, bytes.subarray(0, Math.floor(bytes.length / 2)));
  }
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
