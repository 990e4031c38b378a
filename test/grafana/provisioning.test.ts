import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadDashboard } from './dashboard-queries.ts';

/**
 * grafana/provisioning without a Grafana (none runs here): the provisioned datasource is the one
 * the dashboard selects by default and points at the compose Prometheus; the dashboard provider
 * loads the directory compose mounts grafana/dashboards on (and docs/deployment.md names), and
 * Grafana's home dashboard is a file in it.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(REPO, 'deploy');

interface Datasource { name: string; uid: string; type: string; url: string; jsonData?: { timeInterval?: string; prometheusVersion?: string } }
interface Provider { type: string; options: { path: string } }
interface ComposeService { image?: string; volumes?: string[]; ports?: string[]; environment?: Record<string, string> }

async function yamlFile<T>(path: string): Promise<T> {
  return parse(await readFile(join(REPO, path), 'utf8'), { merge: true }) as T;
}

test('provisioned datasource: the dashboard default, the compose Prometheus, the scrape interval of job fleetprune', async () => {
  const { datasources } = await yamlFile<{ datasources: Datasource[] }>('grafana/provisioning/datasources/prometheus.yml');
  const prometheus = datasources.filter((source) => source.type === 'prometheus');
  assert.equal(prometheus.length, 1);
  const [source] = prometheus as [Datasource];

  const dashboard = loadDashboard() as unknown as { templating: { list: { name: string; type: string; query: string; current: { value: string } }[] } };
  const variable = dashboard.templating.list.find((v) => v.name === 'datasource')!;
  assert.equal(variable.type, 'datasource');
  assert.equal(variable.query, 'prometheus');
  assert.equal(variable.current.value, source.uid, 'the dashboard selects the provisioned datasource by default');
  // Every query goes through the variable (or is Grafana's own annotation source).
  const uids = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node && typeof node === 'object') {
      const ds = (node as { datasource?: { uid?: string } }).datasource;
      if (ds && typeof ds === 'object' && ds.uid) uids.add(ds.uid);
      Object.values(node).forEach(walk);
    }
  };
  walk((dashboard as unknown as { panels: unknown }).panels);
  assert.deepEqual([...uids].filter((uid) => uid !== '${datasource}'), [], 'panels name a datasource other than ${datasource}');

  const { services } = await yamlFile<{ services: Record<string, ComposeService> }>('deploy/docker-compose.yml');
  const url = new URL(source.url);
  assert.ok(services[url.hostname], `${source.url}: no compose service ${url.hostname}`);
  const containerPorts = (services[url.hostname]!.ports ?? []).map((mapping) => mapping.split(':').at(-1));
  assert.ok(containerPorts.includes(url.port), `${source.url}: ${url.hostname} listens on ${containerPorts.join(', ')} in its container`);
  // Grafana picks the query features it offers by the version the datasource declares: the one compose runs.
  assert.equal(`prom/prometheus:v${source.jsonData?.prometheusVersion}`, services[url.hostname]!.image, 'the datasource declares the Prometheus version compose runs');

  const config = await yamlFile<{ scrape_configs: { job_name: string; scrape_interval?: string }[] }>('deploy/prometheus/prometheus.yml');
  assert.equal(source.jsonData?.timeInterval, config.scrape_configs.find((job) => job.job_name === 'fleetprune')!.scrape_interval);
});

test('provisioned dashboards: the provider path is where compose mounts grafana/dashboards and the docs copy it; the home dashboard is in it', async () => {
  const { providers } = await yamlFile<{ providers: Provider[] }>('grafana/provisioning/dashboards/fleetprune.yml');
  assert.equal(providers.length, 1);
  const { path } = providers[0]!.options;
  assert.equal(providers[0]!.type, 'file');

  const { services } = await yamlFile<{ services: Record<string, ComposeService> }>('deploy/docker-compose.yml');
  const grafana = services.grafana!;
  const mounts = new Map((grafana.volumes ?? []).map((volume) => {
    const [source, target] = volume.split(':');
    return [target!, source!] as const;
  }));
  const dashboards = mounts.get(path);
  assert.ok(dashboards, `compose mounts nothing on the provider path ${path}`);
  assert.equal(resolve(DEPLOY, dashboards), join(REPO, 'grafana/dashboards'));
  assert.equal(resolve(DEPLOY, mounts.get('/etc/grafana/provisioning/datasources') ?? ''), join(REPO, 'grafana/provisioning/datasources'));
  assert.equal(resolve(DEPLOY, mounts.get('/etc/grafana/provisioning/dashboards') ?? ''), join(REPO, 'grafana/provisioning/dashboards'));

  const home = grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
  assert.ok(home !== undefined && home.startsWith(`${path}/`), `home dashboard ${home} is outside ${path}`);
  assert.ok(existsSync(join(REPO, 'grafana/dashboards', home.slice(path.length + 1))), `${home}: no such file in grafana/dashboards`);

  const docs = await readFile(join(REPO, 'docs/deployment.md'), 'utf8');
  assert.ok(docs.includes(`\`grafana/dashboards/\` to \`${path}/\``), `docs/deployment.md copies grafana/dashboards/ to ${path}/`);
});
