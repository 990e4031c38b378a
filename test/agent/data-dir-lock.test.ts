import assert from 'node:assert/strict';
import { lstatSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { lockAgentDataDir } from '../../agent/data-dir-lock.ts';
import { tempDir } from '../helpers/cli.ts';

test("something other than a lock at <data-dir>/agent.lock (a directory, a user's file) is refused naming it, not taken for a running agent, and left in place", async (t) => {
  const dataDir = await tempDir(t);
  const path = join(dataDir, 'agent.lock');
  const refusal = (found: string) => ({ name: 'UserError', message: `cannot use the data dir ${dataDir}: ${path} is ${found}, not a fleetprune lock (left as it is); remove it or choose another --data-dir` });
  await mkdir(path);
  await assert.rejects(lockAgentDataDir(dataDir), refusal('a directory'));
  assert.ok(lstatSync(path).isDirectory());
  await rm(path, { recursive: true });
  await writeFile(path, 'my notes\n');
  await assert.rejects(lockAgentDataDir(dataDir), refusal('a file with other content'));
  assert.equal(await readFile(path, 'utf8'), 'my notes\n');
  assert.deepEqual(await readdir(dataDir), ['agent.lock'], 'no takeover or temporary file is left');
});
