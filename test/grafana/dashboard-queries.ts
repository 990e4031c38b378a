import { readFileSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

/** grafana/dashboards/fleetprune.json, and the PromQL its panels and variables run. */
export const DASHBOARD_PATH = new URL('../../grafana/dashboards/fleetprune.json', import.meta.url);

export interface PanelQuery {
  /** Panel title (or `variable $name` / `annotation NAME`). */
  panel: string;
  refId: string;
  /** The expression with the dashboard variables substituted. */
  expr: string;
  instant: boolean;
  /** Whether the query must return data (the lead sets this after a demo rollout). */
  expectData: boolean;
}

export interface Target { refId?: string; expr?: string; legendFormat?: string; instant?: boolean; range?: boolean }
export interface GridPos { x: number; y: number; w: number; h: number }
export interface Panel { type: string; id?: number; title: string; description?: string; gridPos: GridPos; targets?: Target[]; panels?: Panel[] }
export interface Dashboard {
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; definition?: string }[] };
  annotations: { list: { name: string; expr?: string }[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/**
 * What Grafana substitutes before a query reaches Prometheus: multi-value "All" variables become
 * their allValue (`.*`); the built-in intervals become fixed durations.
 */
export const DEFAULT_VARIABLES: Readonly<Record<string, string>> = {
  model: '.*',
  version: '.*',
  cohort: '.*',
  __rate_interval: '1m',
  __interval: '15s',
  __range: '1h',
};

export function substitute(expr: string, variables: Readonly<Record<string, string>> = DEFAULT_VARIABLES): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    if (!(name in variables)) throw new Error(`unknown dashboard variable ${whole} in: ${expr}`);
    return variables[name]!;
  });
}

/** A query variable `label_values(selector, label)`, its selector with the variables substituted. */
export interface VariableQuery {
  name: string;
  selector: string;
  label: string;
}

/**
 * The query variables in dashboard order (a later variable's selector may use an earlier one),
 * each selector substituted with `variables`.
 */
export function variableQueries(dashboard: Dashboard = loadDashboard(), variables: Readonly<Record<string, string>> = DEFAULT_VARIABLES): VariableQuery[] {
  return dashboard.templating.list
    .filter((variable) => variable.type === 'query')
    .map((variable) => {
      const text = typeof variable.query === 'string' ? variable.query : (variable.query as { query: string }).query;
      const match = /^label_values\((.+),\s*(\w+)\)$/.exec(text.trim());
      if (!match) throw new Error(`variable $${variable.name}: not a label_values(selector, label) query: ${text}`);
      return { name: variable.name, selector: substitute(match[1]!, variables), label: match[2]! };
    });
}

/**
 * What Grafana's Prometheus data source substitutes for a multi-value variable with several
 * values selected: a regex alternation of the values, each regex-escaped for use inside a
 * double-quoted PromQL string (so `1.2` becomes `1\\.2`).
 */
export function multiValue(values: readonly string[]): string {
  const escaped = values.map((value) => value.replace(/\\/g, '\\\\\\\\').replace(/[$^*{}[\]'+?.()|]/g, '\\\\$&'));
  return escaped.length === 1 ? escaped[0]! : `(${escaped.join('|')})`;
}

/**
 * Every PromQL query of the dashboard: panel targets (rows included), the label_values()
 * selectors of the query variables (as an instant query of the selector) and the annotation
 * queries. `variables` replaces the dashboard variables (default: every "All" variable as `.*`);
 * `expectData(query)` decides the flag per query (default: none must return data).
 */
export function dashboardQueries(
  dashboard: Dashboard = loadDashboard(),
  options: { variables?: Readonly<Record<string, string>>; expectData?: (query: Omit<PanelQuery, 'expectData'>) => boolean } = {},
): PanelQuery[] {
  const queries: Omit<PanelQuery, 'expectData'>[] = [];
  const visit = (panels: readonly Panel[]) => {
    for (const panel of panels) {
      if (panel.panels) visit(panel.panels);
      for (const target of panel.targets ?? []) {
        if (!target.expr) continue;
        queries.push({ panel: panel.title, refId: target.refId ?? 'A', expr: substitute(target.expr, options.variables), instant: target.instant === true });
      }
    }
  };
  visit(dashboard.panels);
  for (const variable of variableQueries(dashboard, options.variables)) {
    queries.push({ panel: `variable $${variable.name}`, refId: variable.label, expr: variable.selector, instant: true });
  }
  for (const annotation of dashboard.annotations.list) {
    if (annotation.expr) queries.push({ panel: `annotation ${annotation.name}`, refId: 'A', expr: substitute(annotation.expr, options.variables), instant: false });
  }
  return queries.map((query) => ({ ...query, expectData: options.expectData?.(query) ?? false }));
}

const PROM_DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));

/**
 * Writes deploy/prometheus/prometheus.yml and its rules into `dir`, adapted for a test: every
 * scrape, rule group and file_sd refresh at 1s; targets/server.yml lists `server` (host:port);
 * targets/agents/ holds `agents` (host:port and device id) in test.yml, or the shipped
 * example.yml (no targets) when `agents` is not given. Returns the config file path.
 */
export async function writePrometheusConfig(dir: string, targets: { server: string; agents?: readonly { target: string; device: string }[] }): Promise<string> {
  const config = parse(await readFile(join(PROM_DIR, 'prometheus.yml'), 'utf8'));
  config.global = { ...config.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
  for (const job of config.scrape_configs) {
    job.scrape_interval = '1s';
    for (const sd of job.file_sd_configs ?? []) if (sd.refresh_interval) sd.refresh_interval = '1s';
  }
  await writeFile(join(dir, 'prometheus.yml'), stringify(config));
  await mkdir(join(dir, 'rules'));
  for (const file of await readdir(join(PROM_DIR, 'rules'))) {
    const rules = parse(await readFile(join(PROM_DIR, 'rules', file), 'utf8'));
    for (const group of rules.groups) group.interval = '1s';
    await writeFile(join(dir, 'rules', file), stringify(rules));
  }
  await mkdir(join(dir, 'targets', 'agents'), { recursive: true });
  await writeFile(join(dir, 'targets', 'server.yml'), stringify([{ targets: [targets.server] }]));
  if (targets.agents) await writeAgentTargets(dir, targets.agents);
  else await cp(join(PROM_DIR, 'targets', 'agents', 'example.yml'), join(dir, 'targets', 'agents', 'example.yml'));
  return join(dir, 'prometheus.yml');
}

/** (Re)writes the agents' file_sd file of a directory prepared by writePrometheusConfig (atomically: Prometheus may be watching). */
export async function writeAgentTargets(dir: string, agents: readonly { target: string; device: string }[]): Promise<void> {
  const file = join(dir, 'targets', 'agents', 'test.yml');
  await writeFile(`${file}.tmp`, stringify(agents.map(({ target, device }) => ({ targets: [target], labels: { device } }))));
  await rename(`${file}.tmp`, file);
}
