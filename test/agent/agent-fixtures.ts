import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedBroker } from '../../server/broker/embedded-broker.ts';
import { publishAssignment } from '../../server/fleet/fleet-publisher.ts';
import { sha256Hex } from '../../shared/artifact/digest.ts';
import type { Manifest } from '../../shared/artifact/manifest.ts';
import { signManifest } from '../../shared/artifact/signature.ts';
import { writeArtifact } from '../../shared/artifact/write-artifact.ts';
import { Holdout } from '../../agent/holdout.ts';
import { initTfjs } from '../../shared/model/tfjs-backend.ts';
import { toTfjsModel } from '../../shared/model/tfjs-convert.ts';
import type { AgentConfig } from '../../shared/protocol/agent-config.ts';
import type { Assignment, Report, Role } from '../../shared/protocol/payloads.ts';
import { createRng } from '../../shared/util/rng.ts';
import { CLASSIFIER_FEATURES, randomNetwork, rawRows } from '../artifact/fixtures.ts';
import { ArtifactHttpServer } from '../helpers/artifact-http-server.ts';
import { startFleetHarness, testLogger, type FleetHarness } from '../helpers/fleet-harness.ts';

export const LABELS = ['a', 'b', 'c'];
export const TOKEN = 'device-token-for-tests';

export interface TestArtifact {
  id: string;
  version: string;
  dir: string;
  manifest: Manifest;
}

/** A signed 7 → hidden relu layers → 3 softmax classifier with a version, written into `dir`. */
export async function writeVersionedArtifact(
  dir: string,
  version: string,
  seed: number,
  hidden: readonly number[],
  privateKey: KeyObject,
  change?: (network: ReturnType<typeof randomNetwork>) => void,
): Promise<Manifest> {
  await initTfjs();
  const network = randomNetwork(seed, CLASSIFIER_FEATURES.length, [
    ...hidden.map((units) => ({ units, activation: 'relu' as const })),
    { units: LABELS.length, activation: 'softmax' },
  ]);
  change?.(network);
  const tfjsModel = toTfjsModel(network);
  try {
    return await writeArtifact(dir, {
      network,
      tfjsModel,
      privateKey,
      manifest: {
        formatVersion: 1,
        name: 'sensor-classifier',
        version,
        createdAt: '2026-01-02T03:04:05.000Z',
        task: 'classification',
        features: CLASSIFIER_FEATURES,
        labels: LABELS,
        labelName: 'kind',
        lineage: { parentSha256: null, epsilon: null, epsilonMode: null, dataFingerprint: 'test', method: 'dense', seed },
        metrics: { test: { accuracy: 0.9 } },
      },
    });
  } finally {
    tfjsModel.dispose();
  }
}

/** Holdout CSV (f0..f6 + kind) around the networks' input statistics, seeded labels. */
export async function writeHoldout(path: string, rows: number): Promise<void> {
  const network = randomNetwork(1, CLASSIFIER_FEATURES.length, [{ units: 3, activation: 'softmax' }]);
  const rng = createRng(99);
  const lines = [[...CLASSIFIER_FEATURES, 'kind'].join(',')];
  for (const row of rawRows(5, network, rows)) lines.push([...row.map((v) => v.toFixed(4)), LABELS[Math.floor(rng() * 3)]].join(','));
  await writeFile(path, `${lines.join('\n')}\n`);
}

/** Everything an agent talks to: an embedded broker with the fleet receiver, the artifact HTTP fixture, signed artifacts. */
export interface AgentWorld {
  dir: string;
  harness: FleetHarness;
  broker: EmbeddedBroker;
  http: ArtifactHttpServer;
  privateKey: KeyObject;
  publicKey: KeyObject;
  v1: TestArtifact;
  v2: TestArtifact;
  v3: TestArtifact;
  /** ~1 MB model, for interrupted downloads. */
  big: TestArtifact;
  holdoutPath: string;
  holdout: Holdout;
  config(deviceId: string, labels?: Record<string, string>): Promise<AgentConfig>;
  /** `revert`: a rollout's revert to the device's baseline (Assignment.revert), answered `rolled-back` when taken from the previous slot. */
  assign(deviceId: string, artifact: TestArtifact, role: Role, options?: { revert?: boolean }): Promise<Assignment>;
  waitForReport(match: (report: Report) => boolean, timeoutMs?: number): Promise<Report>;
  close(): Promise<void>;
}

export async function createAgentWorld(): Promise<AgentWorld> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-world-'));
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const http = await ArtifactHttpServer.start(TOKEN);
  const artifacts: Record<string, TestArtifact> = {};
  for (const [name, version, seed, hidden] of [['v1', '1', 11, [8]], ['v2', '2', 22, [16]], ['v3', '3', 33, [12]], ['big', '9', 44, [480, 480]]] as const) {
    const artifactDir = join(dir, 'artifacts', name);
    await mkdir(join(dir, 'artifacts'), { recursive: true });
    await writeVersionedArtifact(artifactDir, version, seed, hidden, privateKey);
    const { id, manifest } = await http.addArtifact(artifactDir);
    artifacts[name] = { id, version, dir: artifactDir, manifest };
  }
  const holdoutPath = join(dir, 'holdout.csv');
  await writeHoldout(holdoutPath, 400);
  let broker!: EmbeddedBroker;
  const harness = await startFleetHarness((credentials, server) => (broker = new EmbeddedBroker({ port: 0, credentials, server, logger: testLogger })));
  return {
    dir,
    harness,
    broker,
    http,
    privateKey,
    publicKey,
    v1: artifacts.v1!,
    v2: artifacts.v2!,
    v3: artifacts.v3!,
    big: artifacts.big!,
    holdoutPath,
    holdout: Holdout.fromFile(holdoutPath, 'kind'),
    config: (deviceId, labels) => harness.enroll(deviceId, { url: http.url, token: TOKEN, publicKey }, labels),
    assign: (deviceId, artifact, role, options = {}) =>
      publishAssignment(
        harness.broker,
        deviceId,
        { model: artifact.manifest.name, version: artifact.version, sha256: artifact.id, role, serverUrl: http.url, ...(options.revert ? { revert: true } : {}) },
        { privateKey },
      ),
    waitForReport: (match, timeoutMs) => harness.ingest.waitForReport(match, timeoutMs),
    async close() {
      await harness.stop();
      await http.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The world's v1 with its model.onnx replaced by `bytes`, as version `name`, signed with the server's key and served. */
export async function signedVariant(world: AgentWorld, name: string, bytes: Uint8Array): Promise<TestArtifact> {
  const dir = join(world.dir, 'reexported', name);
  await cp(world.v1.dir, dir, { recursive: true });
  await writeFile(join(dir, 'model.onnx'), bytes);
  const edited = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  edited.version = name;
  edited.files['model.onnx'] = { sha256: sha256Hex(bytes), bytes: bytes.length };
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(signManifest(edited, world.privateKey), null, 2));
  const { id, manifest: served } = await world.http.addArtifact(dir);
  return { id, version: name, dir, manifest: served };
}

export const isOutcome = (assignmentId: string, outcome: string) => (report: Report) =>
  report.kind === 'assignment' && report.assignmentId === assignmentId && report.outcome === outcome;
export const isAnswerTo = (assignmentId: string) => (report: Report) => report.assignmentId === assignmentId && report.kind === 'assignment';
/**
 * A benchmark report of the candidate `sha256` from `deviceId`. The device matters: the agents of a
 * file's tests share one world (and its models), so another test's report of the same model would
 * otherwise match, and a wait for it return before this device did anything.
 */
export const isBenchmarkFor = (sha256: string, deviceId: string) => (report: Report) =>
  report.kind === 'benchmark' && report.deviceId === deviceId && report.candidate.sha256 === sha256;

/** A signed 7 → 8 relu → 1 linear regression artifact (target mean 50, scale 10), and a matching holdout CSV. */
export async function writeRegressionArtifact(dir: string, holdoutPath: string, privateKey: KeyObject): Promise<Manifest> {
  await initTfjs();
  const network = randomNetwork(77, CLASSIFIER_FEATURES.length, [{ units: 8, activation: 'relu' }, { units: 1, activation: 'linear' }], { mean: 50, scale: 10 });
  const tfjsModel = toTfjsModel(network);
  const rng = createRng(7);
  const lines = [[...CLASSIFIER_FEATURES, 'yield'].join(',')];
  for (const row of rawRows(8, network, 200)) lines.push([...row.map((v) => v.toFixed(4)), (40 + rng() * 20).toFixed(3)].join(','));
  await writeFile(holdoutPath, `${lines.join('\n')}\n`);
  try {
    return await writeArtifact(dir, {
      network,
      tfjsModel,
      privateKey,
      manifest: {
        formatVersion: 1,
        name: 'yield-regressor',
        version: 'r1',
        createdAt: '2026-01-02T03:04:05.000Z',
        task: 'regression',
        features: CLASSIFIER_FEATURES,
        labels: [],
        labelName: 'yield',
        lineage: { parentSha256: null, epsilon: null, epsilonMode: null, dataFingerprint: 'test', method: 'dense', seed: 77 },
        metrics: { test: { mse: 1, r2: 0.5 } },
      },
    });
  } finally {
    tfjsModel.dispose();
  }
}
