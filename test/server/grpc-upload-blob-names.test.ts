import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { grpcClient } from './helpers/grpc-client.ts';
import { ADMIN_TOKEN, startTestServer } from './helpers/test-server.ts';

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

test('gRPC UploadBlob: a later message naming another blob than the first is INVALID_ARGUMENT, and nothing is stored', { timeout: 60_000 }, async (t) => {
  const server = (await startTestServer(t))!;
  const blobs = grpcClient(server.grpcAddress, 'Blobs', ADMIN_TOKEN);
  t.after(() => blobs.close());
  const upload = (messages: object[]) =>
    new Promise<any>((resolve) => {
      const call = blobs.client.UploadBlob(blobs.metadata, (error: unknown, response: unknown) => resolve(error ?? response));
      for (const message of messages) call.write(message);
      call.end();
    });
  const first = Buffer.from('first half,');
  const second = Buffer.from(' second half');
  const whole = Buffer.concat([first, second]);
  const other = sha256Of(Buffer.from('another file'));

  const answer = await upload([{ sha256: sha256Of(whole), data: first }, { sha256: other, data: second }]);
  assert.equal(answer?.code, status.INVALID_ARGUMENT, answer?.code === undefined ? `accepted: ${JSON.stringify(answer)}` : `${status[answer.code]}: ${answer.details}`);
  assert.equal(answer.details, 'sha256: a later message names another blob than the first one; send one blob per call');
  await assert.rejects(blobs.stream('DownloadBlob', { sha256: sha256Of(whole) }), (error: any) => error.code === status.NOT_FOUND);

  // Repeating the first message's sha256 is fine.
  const stored = await upload([{ sha256: sha256Of(whole), data: first }, { sha256: sha256Of(whole), data: second }]);
  assert.equal(stored.sha256, sha256Of(whole), `${stored?.code} ${stored?.details}`);
  assert.equal(stored.bytes, String(whole.length));
});
