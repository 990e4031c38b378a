import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { engineMissing } from '../helpers/engines.ts';
import { promtoolBinary } from '../helpers/prometheus.ts';
import { cliFlags } from './cli-flags.ts';

/**
 * deploy/docker-compose.yml and deploy/docker/Dockerfile, without Docker (it cannot run here):
 * the compose file parses (anchors and merge keys included), every bind-mounted file or
 * directory and the build context exist, every fleetprune command uses flags the CLI's --help
 * lists, and the Dockerfile follows the rules (node:20-bookworm-slim, npm ci, non-root user,
 * healthcheck on /healthz). The Prometheus configuration compose mounts (with its compose
 * target files) passes promtool.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(REPO, 'deploy');

interface Service {
  image?: string;
  entrypoint?: string[];
  build?: { context: string; dockerfile: string };
  command?: string[];
  volumes?: string[];
  depends_on?: Record<string, unknown> | string[];
  user?: string;
  hostname?: string;
  stop_grace_period?: string;
  ports?: string[];
  healthcheck?: { test: string[] };
}

async function compose(): Promise<{ services: Record<string, Service>; volumes: Record<string, unknown> }> {
  return parse(await readFile(join(DEPLOY, 'docker-compose.yml'), 'utf8'), { merge: true });
}

async function dockerfileCmd(): Promise<string[]> {
  const text = await readFile(join(DEPLOY, 'docker', 'Dockerfile'), 'utf8');
  return JSON.parse(/^CMD (\[.*\])$/m.exec(text)![1]!) as string[];
}

test('docker-compose.yml: server, mosquitto, prometheus, grafana and three agents; every mounted file exists', async () => {
  const { services, volumes } = await compose();
  for (const name of ['server', 'mosquitto', 'prometheus', 'grafana', 'agent-1', 'agent-2', 'agent-3']) assert.ok(services[name], `service ${name}`);
  const missing: string[] = [];
  for (const [name, service] of Object.entries(services)) {
    if (service.build) {
      const context = resolve(DEPLOY, service.build.context);
      if (!existsSync(join(context, service.build.dockerfile))) missing.push(`${name}: ${service.build.dockerfile}`);
      if (!existsSync(join(context, 'package-lock.json'))) missing.push(`${name}: build context ${context}`);
    }
    for (const volume of service.volumes ?? []) {
      const [source] = volume.split(':');
      if (source!.startsWith('.') || source!.startsWith('/')) {
        if (!existsSync(resolve(DEPLOY, source!))) missing.push(`${name}: ${source}`);
      } else if (!(source! in volumes)) missing.push(`${name}: named volume ${source} not declared`);
    }
    for (const dependency of Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {})) {
      if (!services[dependency]) missing.push(`${name}: depends on unknown ${dependency}`);
    }
  }
  assert.deepEqual(missing, []);
  // The deploy configs are what the engines get.
  assert.ok(services.mosquitto!.volumes!.includes('./mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro'));
  assert.ok(services.prometheus!.volumes!.some((v) => v.startsWith('./prometheus/rules:')));
  assert.ok(services.grafana!.volumes!.some((v) => v.startsWith('../grafana/dashboards:')));
  // Mosquitto reads the 0600 password file the server writes: same uid as the image's user.
  assert.equal(services.mosquitto!.user, '10001:10001');
  assert.match(await readFile(join(DEPLOY, 'docker', 'Dockerfile'), 'utf8'), /^USER 10001:10001$/m);
});

test('docker-compose.yml: the server keeps its node id across recreates, gets time to stop, and analyses query the bundled Prometheus', async () => {
  const { services } = await compose();
  const server = services.server!;
  // The node id defaults to the host name: a container id would change at every recreate.
  assert.equal(server.hostname, 'server');
  assert.equal(server.stop_grace_period, '60s');
  const argv = server.command!;
  const prometheusUrl = new URL(argv[argv.indexOf('--prometheus-url') + 1]!);
  assert.equal(prometheusUrl.hostname, 'prometheus');
  // Inside the compose network Prometheus is on its container port, not the published one.
  const containerPort = services.prometheus!.ports!.map((mapping) => mapping.split(':').at(-1)).at(0);
  assert.equal(prometheusUrl.port, containerPort);
});

test('docker-compose.yml: Mosquitto\'s pid lives in memory (a stale one after down/up could be signalled)', async () => {
  const { volumes } = await compose();
  const run = volumes['mosquitto-run'] as { driver_opts?: Record<string, string> } | null;
  assert.equal(run?.driver_opts?.type, 'tmpfs');
  assert.match(run?.driver_opts?.o ?? '', /uid=10001,gid=10001/, 'owned by the image\'s user, who writes and reads it');
});

test('docker-compose.yml and the Dockerfile run fleetprune only with flags its --help lists', async () => {
  const { services } = await compose();
  const commands: [string, string[]][] = [['Dockerfile CMD', await dockerfileCmd()]];
  for (const [name, service] of Object.entries(services)) {
    if (service.image !== 'fleetprune:local') continue;
    const command = service.command ?? (await dockerfileCmd());
    if (service.entrypoint) {
      // Agents run the standalone bundle the image builds; it takes `fleetprune agent`'s flags (and
      // its stack traces name the TypeScript sources only with node's --enable-source-maps).
      assert.deepEqual(service.entrypoint, ['node', '--enable-source-maps', 'dist/fleetprune-agent.mjs'], `${name}: entrypoint`);
      commands.push([name, ['agent', ...command]]);
    } else commands.push([name, command]);
  }
  assert.equal(commands.length, 5);
  assert.equal(commands.filter(([, argv]) => argv[0] === 'agent').length, 3, 'three agents');
  const problems: string[] = [];
  for (const [name, argv] of commands) {
    const subcommand = argv[0]!;
    assert.ok(['server', 'agent'].includes(subcommand), `${name}: ${subcommand}`);
    const known = await cliFlags(subcommand);
    for (const flag of argv.filter((arg) => arg.startsWith('--'))) if (!known.has(flag)) problems.push(`${name}: ${subcommand} ${flag}`);
    if (subcommand === 'agent') {
      assert.ok(argv.includes('--http-host') && argv[argv.indexOf('--http-host') + 1] === '0.0.0.0', `${name}: reachable by Prometheus`);
    }
  }
  assert.deepEqual(problems, []);
});

test('Dockerfile: node:20-bookworm-slim, npm ci with .npmrc, non-root, /healthz healthcheck', async () => {
  const text = await readFile(join(DEPLOY, 'docker', 'Dockerfile'), 'utf8');
  // Every stage starts from node:20-bookworm-slim, directly or from an earlier stage.
  const stages = [...text.matchAll(/^FROM (\S+)(?: AS (\S+))?/gm)].map((match) => ({ image: match[1]!, name: match[2] }));
  const fromEarlierStage = (image: string, i: number) => stages.slice(0, i).some((stage) => stage.name === image);
  assert.ok(stages.length >= 1 && stages.every(({ image }, i) => image === 'node:20-bookworm-slim' || fromEarlierStage(image, i)), JSON.stringify(stages));
  assert.match(text, /^COPY package\.json package-lock\.json \.npmrc \.\/$/m);
  assert.match(text, /npm ci --omit=dev/);
  assert.match(await readFile(join(REPO, '.npmrc'), 'utf8'), /onnxruntime-node-install=skip/);
  const users = [...text.matchAll(/^USER (\S+)/gm)].map((match) => match[1]!);
  assert.ok(users.length > 0 && !/^(0|root)(:|$)/.test(users.at(-1)!), 'the final stage runs as non-root');
  assert.match(text, /^HEALTHCHECK .*\n?.*\/healthz/m);
  assert.deepEqual(JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(text)![1]!), ['node', 'bin/fleetprune.js']);
  // The agent bundle is built in the image from the sources it needs, and shipped in the final stage.
  assert.match(text, /^RUN npm run build:agent$/m);
  assert.match(text, /^COPY --from=build \/opt\/fleetprune\/dist \.\/dist$/m);
  // Every directory the image copies exists, and .dockerignore leaves it in the build context.
  const ignore = (await readFile(join(REPO, '.dockerignore'), 'utf8')).split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
  for (const match of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of match[1]!.split(/\s+/)) {
      assert.ok(existsSync(join(REPO, source)), `COPY ${source}`);
      assert.equal(dockerIgnores(ignore, source), false, `COPY ${source}: .dockerignore leaves it out of the build context`);
    }
  }
});

/**
 * Whether .dockerignore `patterns` leave `path` out of the build context: the last pattern that
 * matches the path or one of its parent directories decides, `!` patterns take it back in
 * (Docker's rules, for the `*` globs this repository uses).
 */
function dockerIgnores(patterns: readonly string[], path: string): boolean {
  const segments = path.replace(/\/$/, '').split('/');
  const prefixes = segments.map((_, i) => segments.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const line of patterns) {
    const negated = line.startsWith('!');
    const glob = new RegExp(`^${(negated ? line.slice(1) : line).replace(/\/$/, '').replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
    // An exclusion covers everything under a matching directory; an exception must name the path or a parent of it.
    if (prefixes.some((prefix) => glob.test(prefix))) ignored = !negated;
  }
  return ignored;
}

test('the Prometheus config compose mounts (with the compose target files) passes promtool', async (t) => {
  const promtool = promtoolBinary();
  if (!promtool) return engineMissing(t, 'Prometheus', 'promtool is not installed (Debian package prometheus)');
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-compose-prom-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await cp(join(DEPLOY, 'prometheus', 'prometheus.yml'), join(dir, 'prometheus.yml'));
  await cp(join(DEPLOY, 'prometheus', 'rules'), join(dir, 'rules'), { recursive: true });
  await cp(join(DEPLOY, 'compose', 'prometheus', 'targets'), join(dir, 'targets'), { recursive: true });
  const { stdout } = await promisify(execFile)(promtool, ['check', 'config', 'prometheus.yml'], { cwd: dir });
  assert.match(stdout, /SUCCESS: prometheus\.yml is valid/);
});
