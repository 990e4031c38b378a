import assert from 'node:assert/strict';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { makeArtifact, makeSigner, pushArtifact } from '../server/helpers/artifacts.ts';
import { startTestServer, type TestServer } from '../server/helpers/test-server.ts';
import { FleetStore } from '../../server/fleet/fleet-store.ts';
import type { ServerConfigInput } from '../../server/config/server-config.ts';
import { artifactId } from '../../shared/artifact/manifest.ts';
import { openDashboardPage, type DashboardPage } from './dashboard-browser.ts';

export async function json<T>(response: Response): Promise<T> {
  const body = await response.text();
  assert.ok(response.ok, `${response.status}: ${body}`);
  return JSON.parse(body) as T;
}

/** Devices every fixture rollout targets. */
export const TARGET = { matchLabels: { site: 's1' } };

/**
 * A server holding two signed versions (1 and 2) of the model `iris`, and two enrolled devices
 * labelled site=s1 that run iris@1 (never connected: deliveries to them stay pending).
 */
export async function serverWithFleet(t: TestContext, config: Partial<ServerConfigInput> = {}): Promise<TestServer | null> {
  const signer = await makeSigner(t);
  const server = await startTestServer(t, { config: { trustedKeys: [signer.publicKeyPath], ...config } });
  if (!server) return null;
  const pushed: string[] = [];
  for (const version of ['1', '2']) {
    const artifact = await makeArtifact(t, { seed: Number(version), name: 'iris', privateKey: signer.privateKey, version });
    const response = await pushArtifact(server, 'iris', artifact.dir, artifact.manifest);
    assert.equal(response.status, 201, await response.text());
    pushed.push(artifactId(artifact.manifest));
  }
  const fleetStore = new FleetStore(server.server.ctx.store);
  for (const device of ['dev-01', 'dev-02']) {
    const enrolled = await server.request('POST', '/api/devices', { json: { id: device, labels: { site: 's1' } } });
    assert.equal(enrolled.status, 201, await enrolled.text());
    await fleetStore.repos.devices.setSlots(device, { active: { model: 'iris', version: '1', sha256: pushed[0]! }, candidate: null, previous: null }, new Date().toISOString());
  }
  return server;
}

export interface RolloutState {
  phase: string;
  stepIndex: number;
  stepStage: string;
}

export async function startRollout(server: TestServer, steps: unknown[]): Promise<string> {
  const { id } = await json<{ id: string }>(await server.request('POST', '/api/rollouts', { json: { model: 'iris', candidateVersion: '2', target: TARGET, steps } }));
  return id;
}

export async function rolloutState(server: TestServer, id: string): Promise<RolloutState> {
  return json<RolloutState>(await server.request('GET', `/api/rollouts/${id}`));
}

export async function waitForRollout(server: TestServer, id: string, done: (state: RolloutState) => boolean, what: string): Promise<RolloutState> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const state = await rolloutState(server, id);
    if (done(state)) return state;
    if (Date.now() > deadline) throw new Error(`rollout ${id} never reached ${what}: ${JSON.stringify(state)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A TCP proxy in front of a server whose link can be cut (every connection dropped, new ones refused) and restored: an outage without stopping the server. */
export interface CuttableProxy {
  url: string;
  cut(): void;
  restore(): void;
}

export async function cuttableProxy(t: TestContext, target: string): Promise<CuttableProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((client) => {
    if (down) return void client.destroy();
    const upstream = net.connect(Number(port), hostname);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', drop).on('close', drop);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut() {
      down = true;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    restore() {
      down = false;
    },
  };
}

/**
 * A dashboard page (its dialogs accepted or dismissed) and a fleet server running a rollout held
 * in its first step, a pause (then 100%): null when Chromium or the server's engine is missing,
 * and the test has been skipped.
 */
export async function pausedRolloutAndPage(t: TestContext, answerDialogs: 'accept' | 'dismiss'): Promise<{ browser: DashboardPage; server: TestServer; id: string } | null> {
  const browser = await openDashboardPage(t, answerDialogs);
  if (!browser) return null;
  const server = await serverWithFleet(t);
  if (!server) return null;
  const id = await startRollout(server, [{ pause: {} }, { setWeight: 100 }]);
  await waitForRollout(server, id, (s) => s.phase === 'Paused', 'its pause');
  return { browser, server, id };
}
