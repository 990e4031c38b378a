import { constants } from 'node:buffer';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ServiceError } from '../../server/app/service-error.ts';
import { readJobData } from '../../server/jobs/job-data.ts';
import { REST_PRUNE_FIELDS } from '../../server/jobs/prune-job-request.ts';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const CSV = 'a,b,y\n1,2,x\n3,4,z\n';
const answer = (path: string) => `body.data.path: no readable file ${JSON.stringify(path)} under the server's data root (give a path relative to it, without ..)`;

/** base/root (the data root, with a file, a directory and symlinks), and next to it base/outside.csv and base/secret/. */
async function dataRootFixture(t: TestContext) {
  const base = await mkdtemp(join(tmpdir(), 'fleetprune-data-root-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const root = join(base, 'root');
  await mkdir(join(root, 'sub'), { recursive: true });
  await mkdir(join(base, 'secret'));
  await writeFile(join(root, 'data.csv'), CSV);
  await writeFile(join(root, 'sub', 'inner.csv'), CSV);
  await writeFile(join(base, 'outside.csv'), CSV);
  await symlink(join(base, 'outside.csv'), join(root, 'link-out.csv'));
  await symlink(join(base, 'nothing.csv'), join(root, 'link-out-missing.csv'));
  await symlink(join(base, 'secret'), join(root, 'link-out-dir'));
  await symlink('sub/inner.csv', join(root, 'link-in.csv'));
  return { base, root };
}

test('a job data path outside the root gets the same answer as a missing one, whether or not anything exists there', async (t) => {
  const { base, root } = await dataRootFixture(t);
  const read = (path: string) => readJobData({ path }, root, 1024 * 1024, REST_PRUNE_FIELDS);

  assert.deepEqual(await read('data.csv'), { text: CSV, source: 'data.csv' });
  assert.deepEqual(await read('sub/inner.csv'), { text: CSV, source: 'sub/inner.csv' });
  assert.deepEqual(await read('./sub//inner.csv'), { text: CSV, source: './sub//inner.csv' });
  assert.equal((await read('link-in.csv')).text, CSV, 'a symlink that stays inside the root is followed');
  // A file over the body limit is refused naming its size and the flag that sets the limit.
  await assert.rejects(readJobData({ path: 'data.csv' }, root, 10, REST_PRUNE_FIELDS), (error: unknown) => {
    assert.ok(error instanceof ServiceError);
    assert.deepEqual([error.code, error.message], ['payload_too_large', `body.data.path: the file is ${CSV.length} bytes, more than the 10 the server takes (its --max-body-bytes)`]);
    return true;
  });
  // A file within a large --max-body-bytes but longer than node reads as one text: refused before
  // it is read (it was a 500, ERR_STRING_TOO_LONG). Sparse: no disk or time spent on it.
  const huge = join(root, 'huge.csv');
  await writeFile(huge, '');
  await truncate(huge, constants.MAX_STRING_LENGTH + 1);
  await assert.rejects(readJobData({ path: 'huge.csv' }, root, 2 ** 31, REST_PRUNE_FIELDS), (error: unknown) => {
    assert.ok(error instanceof ServiceError);
    assert.deepEqual(
      [error.code, error.message],
      ['payload_too_large', `body.data.path: the file is ${constants.MAX_STRING_LENGTH + 1} bytes, more than node reads as one text (${constants.MAX_STRING_LENGTH} bytes); use a sample of its rows`],
    );
    return true;
  });
  await rm(huge);

  const refused = [
    // Outside the root: existing (a file, a directory) or not, absolute or through `..`.
    '/etc/passwd',
    '/etc/nonexistent-fleetprune',
    '/root/.ssh',
    '/',
    join(base, 'outside.csv'),
    join(base, 'nothing.csv'),
    '../outside.csv',
    '../nothing.csv',
    '../secret',
    '../../../../etc/passwd',
    'sub/../../outside.csv',
    // Absolute or with `..` even when it would land inside the root: refused before the file system is asked.
    join(root, 'data.csv'),
    'sub/../data.csv',
    // Symlinks inside the root that lead out of it, to something or to nothing.
    'link-out.csv',
    'link-out-missing.csv',
    'link-out-dir',
    'link-out-dir/anything',
    // Inside the root but not a regular file, or missing.
    '.',
    'sub',
    'sub/',
    'missing.csv',
    'data.csv/more',
  ];
  for (const path of refused) {
    await assert.rejects(
      read(path),
      (error: unknown) => error instanceof ServiceError && error.code === 'bad_request' && error.message === answer(path),
      path,
    );
  }
});

test('a data file under the root that is not CSV text (a Windows-1252 export, a workbook) is refused naming what it is, as prune refuses it', async (t) => {
  const { root } = await dataRootFixture(t);
  await writeFile(join(root, 'latin1.csv'), Buffer.from('a,b,y\n1,2,B\xe4r\n3,4,B\xf6r\n', 'latin1'));
  await writeFile(join(root, 'sheet.csv'), Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(64)]));
  const read = (path: string) => readJobData({ path }, root, 1024 * 1024, REST_PRUNE_FIELDS);
  await assert.rejects(read('latin1.csv'), { message: /^latin1\.csv: line 2 is not UTF-8 text \(Windows-1252 or Latin-1/ });
  await assert.rejects(read('sheet.csv'), { message: /^sheet\.csv: the file is a zip archive \(an Excel \.xlsx or OpenDocument \.ods workbook\?\), not CSV text/ });
});

test('REST and gRPC answer a prune job data path outside the root as they answer a missing one', async (t) => {
  const { root } = await dataRootFixture(t);
  const server = (await startTestServer(t, { config: { dataRoot: root } }))!;
  const jobs = grpcClient(server.grpcAddress, 'Jobs', ADMIN_TOKEN);
  t.after(() => jobs.close());
  const restAnswers = new Set<string>();
  const grpcAnswers = new Set<string>();
  for (const path of ['/etc/passwd', '/etc/nonexistent-fleetprune', '/root', '../outside.csv', '../nothing.csv', 'link-out.csv', 'sub', 'missing.csv']) {
    const response = await server.request('POST', '/api/jobs/prune', { json: { name: 'x', label: 'y', data: { path } } });
    assert.equal(response.status, 400, path);
    restAnswers.add(((await response.json()) as { error: { message: string } }).error.message.replace(JSON.stringify(path), '"PATH"'));
    const refused = await jobs.call('StartPrune', { name: 'x', label: 'y', path }).then(
      () => assert.fail(`${path} was accepted`),
      (error: { code: number; details: string }) => error,
    );
    assert.equal(refused.code, status.INVALID_ARGUMENT, path);
    grpcAnswers.add(refused.details.replace(JSON.stringify(path), '"PATH"'));
  }
  assert.deepEqual([...restAnswers], [answer('PATH')], 'one REST answer for every path');
  assert.deepEqual([...grpcAnswers], [answer('PATH').replace(/^body\.data\.path: /, 'path: ')], 'one gRPC answer for every path');
  // A file inside the root is read (and parsed: it has no column "nope").
  const accepted = await server.request('POST', '/api/jobs/prune', { json: { name: 'x', label: 'nope', data: { path: 'data.csv' } } });
  assert.equal(accepted.status, 400);
  assert.match(((await accepted.json()) as { error: { message: string } }).error.message, /no label column "nope"/);
});

test('a directory on the path swapped for a symlink out of the root while a job reads never yields the file outside (the opened file is checked again)', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'fleetprune-data-root-race-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const root = join(base, 'root');
  await mkdir(join(root, 'd'), { recursive: true });
  await mkdir(join(base, 'outside'));
  await writeFile(join(root, 'd', 'data.csv'), 'x,y\n1,inside\n');
  await writeFile(join(base, 'outside', 'data.csv'), 'x,y\n1,SECRET\n');
  await symlink(join(base, 'outside'), join(root, 'link-d'));
  // Someone who may write in the data root keeps swapping root/d (a directory) and root/link-d (a symlink out).
  const { rename } = await import('node:fs/promises');
  let stop = false;
  const swapper = (async () => {
    while (!stop) {
      await rename(join(root, 'd'), join(root, 'tmp')).catch(() => {});
      await rename(join(root, 'link-d'), join(root, 'd')).catch(() => {});
      await rename(join(root, 'tmp'), join(root, 'link-d')).catch(() => {});
    }
  })();
  const read = { inside: 0, outside: 0, refused: 0 };
  // At least 3 s of swapping, and on until the file inside has been read at least once: on a
  // loaded machine a read rarely falls between two swaps (seen: 749 reads in 3 s, all refused).
  const until = Date.now() + 3000;
  const deadline = Date.now() + 60_000;
  try {
    while (Date.now() < until || (read.inside === 0 && Date.now() < deadline)) {
      const text = await readJobData({ path: 'd/data.csv' }, root, 1_000_000, REST_PRUNE_FIELDS).then((data) => data.text, () => null);
      if (text === null) read.refused += 1;
      else if (text.includes('SECRET')) read.outside += 1;
      else read.inside += 1;
    }
  } finally {
    stop = true;
    await swapper;
  }
  assert.equal(read.outside, 0, JSON.stringify(read));
  assert.ok(read.inside > 0, `the file inside was read at times: ${JSON.stringify(read)}`);
});
