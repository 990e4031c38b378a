import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { REPO_ROOT, tempDir } from '../helpers/cli.ts';

const NOBODY = 65534;
const SETPRIV = '/usr/bin/setpriv';

// The agent said "agent ready" and then refused every assignment with EACCES on models/.staging-….
test("a data dir whose models/ the agent's user may not write to stops it at start, naming the directory", async (t) => {
  if (process.getuid?.() !== 0 || !existsSync(SETPRIV)) {
    t.skip('needs root and setpriv, to run as another user');
    return;
  }
  const dir = await tempDir(t);
  await chmod(dir, 0o755);
  const dataDir = join(dir, 'agent-data');
  await mkdir(join(dataDir, 'models'), { recursive: true });
  await chown(dataDir, NOBODY, NOBODY);
  await chown(join(dataDir, 'models'), 0, 0);
  await chmod(join(dataDir, 'models'), 0o555);
  const compiled = join(REPO_ROOT, 'agent', 'data-dir.js');
  const module = pathToFileURL(existsSync(compiled) ? compiled : join(REPO_ROOT, 'agent', 'data-dir.ts')).href;
  const script = `const { DataDir } = await import(${JSON.stringify(module)}); try { await new DataDir(${JSON.stringify(dataDir)}).prepare(); console.log('prepared'); } catch (e) { console.log(e.message); }`;
  const loader = existsSync(compiled) ? [] : ['--import', 'tsx'];
  /** What DataDir.prepare() says, run as the user nobody. */
  const prepareAsNobody = () => new Promise<string>((resolve, reject) =>
    execFile(SETPRIV, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, ...loader, '--input-type=module', '-e', script], { cwd: REPO_ROOT, env: { ...process.env, TSX_DISABLE_CACHE: '1' } }, (error, out, err) => (error ? reject(new Error(`${error.message}: ${err}`)) : resolve(out))),
  );
  const stdout = await prepareAsNobody();
  assert.equal(stdout.trim(), `cannot use the data dir ${dataDir}: this user may not write to ${join(dataDir, 'models')} (EACCES); give the agent's user write access to the data dir (chown -R USER ${dataDir})`);
  // Writable by the user: prepared.
  await chown(join(dataDir, 'models'), NOBODY, NOBODY);
  await chmod(join(dataDir, 'models'), 0o755);
  const again = await prepareAsNobody();
  assert.equal(again.trim(), 'prepared');
});
