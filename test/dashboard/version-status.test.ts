import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderModels, sweepScoreLabel, type VersionRow } from '../../server/dashboard/ui/models-view.ts';

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

test('the Models view says an absolute ε is one (models show does): 1000000 is no relative ε; the sweep chart names the score it plots', () => {
  const html = renderModels([
    version('1', {}),
    version('2', { lineage: { epsilon: 0.3 }, manifest: { lineage: { epsilonMode: 'relative' } } }),
    version('3', { lineage: { epsilon: 1000000 }, manifest: { lineage: { epsilonMode: 'absolute' } } }),
  ]);
  const rows = [...html.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => m[1]!).filter((row) => row.includes('<td>'));
  const epsilonCells = rows.map((row) => [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)][3]![1]);
  assert.deepEqual(epsilonCells, ['', '0.3', '1000000 (absolute)']);
  assert.equal(sweepScoreLabel([{ epsilon: 0.1, params: 10, paramCut: 0.5, test: { accuracy: 0.9 } }]), 'test accuracy %');
  assert.equal(sweepScoreLabel([{ epsilon: 0.1, params: 10, paramCut: 0.5, test: { mse: 3000, r2: 0.44 } }, { epsilon: 0.2, params: 8, paramCut: 0.6, test: null }]), 'test R²');
});
