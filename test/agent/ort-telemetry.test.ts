import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

test('an agent process running models writes no onnxruntime telemetry (no mat-debug log, session file, device id or event database)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-ort-telemetry-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [tmp, home] = [join(dir, 'tmp'), join(dir, 'home')];
  for (const path of [tmp, home]) await (await import('node:fs/promises')).mkdir(path);
  const script = join(dir, 'run-model.mts');
  await writeFile(
    script,
    `import { createOnnxSession } from ${JSON.stringify(join(REPO, 'agent/onnx-session.ts'))};
import { packRows, runModel } from ${JSON.stringify(join(REPO, 'agent/onnx-runner.ts'))};
import { exportOnnx } from ${JSON.stringify(join(REPO, 'shared/artifact/onnx-export.ts'))};
import { randomNetwork, rawRows } from ${JSON.stringify(join(REPO, 'test/artifact/fixtures.ts'))};
const network = randomNetwork(1, 4, [{ units: 5, activation: 'relu' }, { units: 2, activation: 'softmax' }]);
const session = await createOnnxSession(exportOnnx(network));
console.log(JSON.stringify(await runModel(session, packRows(rawRows(2, network, 2), 4), 2, 4)));
`,
  );
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, HOME: home, XDG_CACHE_HOME: join(home, '.cache') };
  delete env.ORT_DISABLE_TELEMETRY;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], { cwd: REPO, env });
  assert.equal(JSON.parse(stdout).length, 2, 'the model ran');
  assert.deepEqual((await readdir(tmp)).filter((name) => !name.startsWith('tsx-')), [], 'nothing of onnxruntime in the temp directory');
  assert.deepEqual(await readdir(home), [], 'nothing under the home directory (~/.cache/Microsoft/DeveloperTools/.onnxruntime)');
});
