// One contender for a prune output lock (test/pruning/prune-output-lock-race.test.ts): waits until
// the shared start time, then tries lockPruneOutput and prints `held` or `refused: <why>`; holds
// the lock until its stdin ends (the test ends it once every contender has tried).
import { lockPruneOutput } from '../../../server/cli/prune-output-lock.ts';

const [outDir, startAt] = [process.argv[2]!, Number(process.argv[3])];
while (Date.now() < startAt) {
  // Busy-wait: every contender tries within the same millisecond or two.
}
try {
  const lock = lockPruneOutput(outDir);
  process.stdout.write('held\n');
  process.stdin.resume().on('end', () => lock.release());
} catch (error) {
  process.stdout.write(`refused: ${(error as Error).message}\n`);
}
