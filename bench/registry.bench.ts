// npm run bench:registry — artifact download throughput (HTTP, gRPC, disk ceiling) and registry
// list/get requests per second with 10,000 versions on SQLite and PostgreSQL.
import { credentials, Metadata, type Client } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pg from 'pg';
import { parseServerConfig } from '../server/config/server-config.ts';
import { startServer, type RunningServer } from '../server/app/start-server.ts';
import { loadFleetpruneProto } from '../shared/proto/load-proto.ts';
import { createLogger } from '../shared/util/log.ts';
import type { Manifest } from '../shared/artifact/manifest.ts';
import { benchArgs, benchUsageError } from './lib/bench-args.ts';
import { describeMachine, writeBenchmarkSection, writeResultsJson } from './lib/benchmarks-file.ts';

// It takes no flags: one given is refused before anything runs (it was ignored, and the section overwritten).
benchArgs('registry', {});

const TOKEN = 'bench-admin-token-0123456789';
const BLOB_MB = 64;
const VERSIONS = 10_000;
const RPS_SECONDS = 4;
const CONCURRENCY = 8;
/** Loopback throughput on a shared 2-core machine swings ±40% run to run; the best of several is the stable figure. */
const DOWNLOAD_RUNS = 5;
const PG_URL = process.env.FLEETPRUNE_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** The URL without its password, for messages and the section. */
const pgUrlShown = (() => {
  try {
    const url = new URL(PG_URL);
    url.password = url.password ? '***' : '';
    return url.toString();
  } catch {
    return PG_URL;
  }
})();

// PostgreSQL is measured last: a database it cannot reach stops it now, in one line, not after the SQLite runs.
await (async () => {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (error) {
    benchUsageError('registry', `cannot connect to PostgreSQL at ${pgUrlShown} (${(error as Error).message}); start it, or set FLEETPRUNE_BENCH_DATABASE_URL to a database it may create a schema in`);
  } finally {
    await client.end().catch(() => {});
  }
})();

async function start(dataDir: string, pgSchema?: string): Promise<RunningServer> {
  return startServer(
    parseServerConfig({
      dataDir,
      host: '127.0.0.1',
      httpPort: 0,
      grpcPort: 0,
      mqttPort: 0,
      adminToken: TOKEN,
      ...(pgSchema ? { databaseUrl: PG_URL, databaseSchema: pgSchema } : {}),
    }),
    { log: createLogger('bench', 'silent') },
  );
}

async function best(runs: number, work: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < runs; i++) top = Math.max(top, await work());
  return top;
}

async function throughput(server: RunningServer): Promise<{ disk: number; http: number; grpc: number }> {
  const bytes = randomBytes(BLOB_MB * 1024 * 1024);
  const { sha256 } = await server.ctx.blobs.put(Readable.from([bytes]), null, bytes.length);
  const path = server.ctx.blobs.pathOf(sha256);
  /** MiB/s: the blob is BLOB_MB MiB. */
  const mbps = (seconds: number) => BLOB_MB / seconds;
  const disk = await best(DOWNLOAD_RUNS, async () => {
    const t0 = performance.now();
    let n = 0;
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) n += (chunk as Buffer).length;
    if (n !== bytes.length) throw new Error('short read');
    return mbps((performance.now() - t0) / 1000);
  });
  const url = `http://127.0.0.1:${server.port('http')}/api/blobs/${sha256}`;
  const http = await best(DOWNLOAD_RUNS, async () => {
    const t0 = performance.now();
    const response = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    let n = 0;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) n += chunk.length;
    if (n !== bytes.length) throw new Error('short HTTP read');
    return mbps((performance.now() - t0) / 1000);
  });
  const client = new (loadFleetpruneProto().Blobs)(`127.0.0.1:${server.port('grpc')}`, credentials.createInsecure()) as Client & Record<string, Function>;
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${TOKEN}`);
  const grpc = await best(DOWNLOAD_RUNS, async () => {
    const t0 = performance.now();
    const n = await new Promise<number>((resolve, reject) => {
      let total = 0;
      const call = client.DownloadBlob!.call(client, { sha256, chunk_size: 1024 * 1024 }, metadata);
      call.on('data', (chunk: { data: Buffer }) => (total += chunk.data.length));
      call.on('error', reject);
      call.on('end', () => resolve(total));
    });
    if (n !== bytes.length) throw new Error('short gRPC read');
    return mbps((performance.now() - t0) / 1000);
  });
  client.close();
  return { disk, http, grpc };
}

async function seedVersions(server: RunningServer, manifest: Manifest): Promise<void> {
  const now = new Date().toISOString();
  await server.ctx.store.transaction(async (tx) => {
    await tx.models.ensureModel('bench', now, 'bench');
    for (let i = 1; i <= VERSIONS; i++) {
      await tx.models.insertVersion({
        model: 'bench',
        version: String(i),
        seq: i,
        artifactId: i.toString(16).padStart(64, '0'),
        manifest,
        parentArtifactId: i > 1 ? (i - 1).toString(16).padStart(64, '0') : null,
        epsilon: 0.1,
        dataFingerprint: 'bench',
        metrics: manifest.metrics,
        createdAt: now,
        createdBy: 'bench',
      });
    }
  });
}

async function requestsPerSecond(base: string, path: () => string): Promise<number> {
  const deadline = performance.now() + RPS_SECONDS * 1000;
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        const response = await fetch(`${base}${path()}`, { headers: { authorization: `Bearer ${TOKEN}` } });
        await response.arrayBuffer();
        if (response.status !== 200) throw new Error(`status ${response.status}`);
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

async function registryRates(engine: 'sqlite' | 'postgres', manifest: Manifest) {
  const dataDir = await mkdtemp(join(os.tmpdir(), `fleetprune-bench-${engine}-`));
  const schema = engine === 'postgres' ? `fp_bench_${process.pid}` : undefined;
  const server = await start(dataDir, schema);
  try {
    await seedVersions(server, manifest);
    const base = `http://127.0.0.1:${server.port('http')}`;
    const list = await requestsPerSecond(base, () => `/api/models/bench/versions?limit=100&after=${Math.floor(Math.random() * (VERSIONS - 100))}`);
    const get = await requestsPerSecond(base, () => `/api/models/bench/versions/${1 + Math.floor(Math.random() * VERSIONS)}`);
    return { list, get };
  } finally {
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
    if (schema) {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    }
  }
}

async function sampleManifest(): Promise<Manifest> {
  const { writeSampleArtifact } = await import('../test/artifact/fixtures.ts');
  const dir = await mkdtemp(join(os.tmpdir(), 'fleetprune-bench-artifact-'));
  try {
    return await writeSampleArtifact(join(dir, 'a'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const machine = describeMachine();
const dataDir = await mkdtemp(join(os.tmpdir(), 'fleetprune-bench-'));
const server = await start(dataDir);
const download = await throughput(server);
await server.close();
await rm(dataDir, { recursive: true, force: true });
const manifest = await sampleManifest();
const sqlite = await registryRates('sqlite', manifest);
const postgres = await registryRates('postgres', manifest);

const results = { machine, date: new Date().toISOString(), blobMiB: BLOB_MB, versions: VERSIONS, concurrency: CONCURRENCY, download, sqlite, postgres };
await writeResultsJson('registry', results);

const f = (n: number) => n.toFixed(0);
const section = `Machine: ${machine}. ${new Date().toISOString().slice(0, 10)}.

| Measurement | Result |
| --- | --- |
| Read ${BLOB_MB} MiB blob from disk (ceiling) | ${f(download.disk)} MiB/s |
| Download over HTTP (\`GET /api/blobs/:sha256\`) | ${f(download.http)} MiB/s (${((download.http / download.disk) * 100).toFixed(0)}% of disk) |
| Download over gRPC (\`Blobs.DownloadBlob\`, 1 MiB chunks) | ${f(download.grpc)} MiB/s (${((download.grpc / download.disk) * 100).toFixed(0)}% of disk) |
| SQLite, ${VERSIONS} versions: list 100 (\`GET /api/models/:name/versions\`) | ${f(sqlite.list)} req/s |
| SQLite, ${VERSIONS} versions: get one (\`GET /api/models/:name/versions/:ref\`) | ${f(sqlite.get)} req/s |
| PostgreSQL, ${VERSIONS} versions: list 100 | ${f(postgres.list)} req/s |
| PostgreSQL, ${VERSIONS} versions: get one | ${f(postgres.get)} req/s |

Best of ${DOWNLOAD_RUNS} downloads each; request rates over ${RPS_SECONDS} s with ${CONCURRENCY} concurrent clients, in-process server, loopback, admin token. PostgreSQL: ${pgUrlShown} (FLEETPRUNE_BENCH_DATABASE_URL), a schema of its own, dropped after.
`;
await writeBenchmarkSection('Registry (bench:registry)', section);
process.stdout.write(section);
