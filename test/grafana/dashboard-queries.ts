import { readFileSync } from 'node:fs';

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

interface Target { refId?: string; expr?: string; instant?: boolean; range?: boolean }
interface Panel { type: string; title: string; targets?: Target[]; panels?: Panel[] }
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

/**
 * Every PromQL query of the dashboard: panel targets (rows included), the label_values()
 * selectors of the query variables (as an instant query of the selector) and the annotation
 * queries. `expectData(query)` decides the flag per query (default: none must return data).
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
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const text = typeof variable.query === 'string' ? variable.query : (variable.query as { query: string }).query;
    const match = /^label_values\((.+),\s*(\w+)\)$/.exec(text.trim());
    if (!match) throw new Error(`variable $${variable.name}: not a label_values(selector, label) query: ${text}`);
    queries.push({ panel: `variable $${variable.name}`, refId: match[2]!, expr: substitute(match[1]!, options.variables), instant: true });
  }
  for (const annotation of dashboard.annotations.list) {
    if (annotation.expr) queries.push({ panel: `annotation ${annotation.name}`, refId: 'A', expr: substitute(annotation.expr, options.variables), instant: false });
  }
  return queries.map((query) => ({ ...query, expectData: options.expectData?.(query) ?? false }));
}
