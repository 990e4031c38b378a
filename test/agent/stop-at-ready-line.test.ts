import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createAgentWorld, type AgentWorld } from './agent-fixtures.ts';
import { AgentProcess } from './agent-process.ts';
import { HOLD_AFTER_READY_LINE_ENV } from '../helpers/hold-after-ready-line.ts';

let world: AgentWorld;
before(async () => {
  world = await createAgentWorld();
});
after(() => world.close());

test('an agent sent SIGTERM as soon as it prints its ready line stops cleanly', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-ready-signal-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const configPath = await AgentProcess.writeConfig(dir, await world.config('ready-signal'));
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'data')], HOLD_AFTER_READY_LINE_ENV);
  t.after(() => agent.kill9());
  await agent.waitFor(() => agent.stdout.includes('agent ready'), 30_000, 'the agent ready line');
  await agent.stop();
  assert.deepEqual(await agent.exited, { code: 0, signal: null }, agent.stderr);
  assert.match(agent.stderr, /"msg":"shutting down"/);
});

test('an agent sent SIGTERM answers a device API request still under way (its body still arriving) before it stops, rather than resetting it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-stop-inflight-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const configPath = await AgentProcess.writeConfig(dir, await world.config('stop-inflight'));
  const agent = AgentProcess.spawn(['--config', configPath, '--data-dir', join(dir, 'data')]);
  t.after(() => agent.kill9());
  const { port } = await agent.ready(30_000);
  const body = JSON.stringify({ rows: [[1, 2, 3, 4]] });
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString()));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
  await new Promise((resolve) => setTimeout(resolve, 200));
  process.kill(agent.pid, 'SIGTERM');
  await agent.waitForLog('shutting down', 10_000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const answeredAt = Date.now();
  socket.write(body.slice(5));
  await closed;
  // No model is active: the answer is a 503 saying so, not a reset; the connection closes with it
  // (not kept alive until its timeout, which held the stop for the whole grace period).
  assert.match(received, /^HTTP\/1\.1 503 /, received);
  assert.match(received, /\r\nConnection: close\r\n/i, received);
  assert.deepEqual(await agent.exited, { code: 0, signal: null }, agent.stderr);
  assert.ok(Date.now() - answeredAt < 4_000, `stopped ${Date.now() - answeredAt} ms after the answer`);
  assert.doesNotMatch(agent.stderr, /were cut off/);
  // A new connection after the stop is not taken.
  await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
});
