import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/cli.ts';

/** Runs a bench script as `npm run bench:*` does (node --import tsx), killed after 30 s: a refusal comes long before any measuring. */
function runBench(file: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'bench', file), ...args], { cwd: REPO_ROOT, timeout: 30_000, env: { ...process.env, NODE_OPTIONS: '' } }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error.code as number | undefined) ?? null) : 0, stdout, stderr }),
    ),
  );
}

test('bench scripts refuse a bad command line in one line, exit code 2, before measuring anything or touching BENCHMARKS.md', async () => {
  const before = await readFile(join(REPO_ROOT, 'BENCHMARKS.md'), 'utf8');
  const cases: [string, string[], string][] = [
    ['rollout.bench.ts', ['--devices', '10'], "bench:rollout: Unknown option '--devices'; it takes no flags or arguments\n"],
    ['fleet-scale.bench.ts', ['extra'], "bench:scale: Unexpected argument 'extra'; it takes no flags or arguments\n"],
    ['prune.bench.ts', ['--seeds', 'abc'], 'bench:prune: --seeds: a whole number of seeds from 1 to 50, not "abc"\n'],
    ['prune.bench.ts', ['--datasets', 'iris,foo'], 'bench:prune: --datasets: unknown "foo"; the data sets are iris, wine, breast_cancer, diabetes, mnist\n'],
  ];
  const runs = await Promise.all(cases.map(([file, args]) => runBench(file, args)));
  runs.forEach((run, i) => assert.deepEqual([run.code, run.stdout, run.stderr], [2, '', cases[i]![2]], cases[i]!.slice(0, 2).join(' ')));
  assert.equal(await readFile(join(REPO_ROOT, 'BENCHMARKS.md'), 'utf8'), before);
});
