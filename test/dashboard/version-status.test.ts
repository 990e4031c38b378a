import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderModels, type VersionRow } from '../../server/dashboard/ui/models-view.ts';

const version = (v: string, extra: Partial<VersionRow>): VersionRow => ({
  model: 'iris',
  version: v,
  seq: Number(v),
  artifactId: v.repeat(64),
  manifest: {},
  lineage: {},
  metrics: {},
  aliases: [],
  retired: false,
  ...extra,
});

/** The Models view left out what the versions API says rollouts made of each version: a failed candidate looked like any other. */
test('the Models view marks a version a rollout failed or rolled back, its tooltip saying why and when', () => {
  const html = renderModels([
    version('1', { aliases: ['production'], status: { status: 'production', reason: 'promoted by ro-1', at: '2026-12-01T10:00:00.000Z' } }),
    version('2', { status: { status: 'failed', reason: 'ro-2 failed: accuracy <b>too low</b>', at: '2026-12-02T10:00:00.000Z' } }),
    version('3', { status: { status: 'rolled-back', reason: 'rolled back by token:ops', at: '2026-12-03T10:00:00.000Z' } }),
    version('4', { status: null }),
  ]);
  const rows = [...html.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => m[1]!).filter((row) => row.includes('<td>'));
  // The status badges (those with a tooltip); production shows as the alias badge alone.
  assert.match(rows[0]!, /production/, 'production shows as its alias');
  const badges = rows.map((row) => [...row.matchAll(/<span class="badge([^"]*)" title="([^"]*)">([^<]*)<\/span>/g)].map((m) => `${m[3]}${m[1]} (${m[2]})`));
  assert.deepEqual(badges, [
    [],
    ['failed bad (ro-2 failed: accuracy &#60;b&#62;too low&#60;/b&#62; (2026-12-02T10:00:00.000Z))'],
    ['rolled back bad (rolled back by token:ops (2026-12-03T10:00:00.000Z))'],
    [],
  ]);
});
