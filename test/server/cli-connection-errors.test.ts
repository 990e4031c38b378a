import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { ServerConnection } from '../../server/cli/grpc-client.ts';

const failure = (code: status, details: string): ServiceError => Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata: new Metadata() });

test('the CLI names what a failed call means for the change it asked for: a deadline or a dropped connection may have let it happen', () => {
  const connection = new ServerConnection({ server: '127.0.0.1:9', token: 'x' });
  const described = (code: status, details: string, method = 'RollbackRollout') => {
    const error = connection.describe(failure(code, details), method);
    return [error.message, error.exitCode];
  };
  // A call whose connection dropped mid-way (keepalive pings unanswered): it said "is that its gRPC port?".
  assert.deepEqual(described(status.UNAVAILABLE, 'Connection dropped'), [
    'the connection to the server at 127.0.0.1:9 dropped before it answered (it stopped answering, or the network failed); a change asked for may have been made all the same: check (list or status) before retrying',
    5,
  ]);
  assert.deepEqual(described(status.DEADLINE_EXCEEDED, 'Deadline exceeded after 60.001s'), [
    'the server at 127.0.0.1:9 did not answer within 60 s; a change asked for may have been made all the same: check (list or status) before retrying',
    5,
  ]);
  // The server shut down or restarted during the call (grpc-js: "Call cancelled"): it said that alone, exit 2.
  assert.deepEqual(described(status.CANCELLED, 'Call cancelled'), [
    'the server at 127.0.0.1:9 ended the call before it answered (it shut down or restarted); a change asked for may have been made all the same: check (list or status) before retrying',
    5,
  ]);
  // A read asked for no change: it is simply tried again.
  for (const method of ['ListModels', 'GetRollout', 'WatchRollout', 'DownloadBlob', 'CheckPush']) {
    assert.deepEqual(described(status.DEADLINE_EXCEEDED, 'Deadline exceeded after 60.001s', method), ['the server at 127.0.0.1:9 did not answer within 60 s; it asked for no change: try again', 5], method);
  }
  assert.deepEqual(described(status.UNAVAILABLE, 'Connection dropped', 'ListDevices'), [
    'the connection to the server at 127.0.0.1:9 dropped before it answered (it stopped answering, or the network failed); it asked for no change: try again',
    5,
  ]);
  // Reset as it opened: an MQTT broker's port given for the gRPC one, or a load balancer with no
  // server behind it (a failover): the hint, and exit 5, since a script's retry may be right.
  assert.deepEqual(described(status.UNAVAILABLE, 'No connection established. Last error: read ECONNRESET (2026-12-06T22:01:53.957Z). Resolution note: '), [
    "cannot reach the server at 127.0.0.1:9 (ECONNRESET: it reset the connection as it opened, as a port that is no gRPC server's does, an MQTT broker's 1883 say; is that its gRPC port, grpc= on its start-up line? If it is, something in between reset the connection: try again)",
    5,
  ]);
  // Never connected: as before.
  assert.deepEqual(described(status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:9'), ['cannot reach the server at 127.0.0.1:9 (ECONNREFUSED)', 5]);
});
