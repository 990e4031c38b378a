import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { ServedLatency } from '../../agent/served-latency.ts';

function servedLatency() {
  const registry = new Registry();
  const histogram = new Histogram({ name: 'served_seconds', help: 'h', labelNames: ['model', 'version'] as const, buckets: [0.001], registers: [registry] });
  const counts = async () => {
    const text = await registry.metrics();
    return Object.fromEntries([...text.matchAll(/^served_seconds_count\{model="([^"]+)",version="([^"]+)"\} (\d+)$/gm)].map(([, model, version, count]) => [`${model}/${version}`, Number(count)]));
  };
  return { latency: new ServedLatency(histogram), counts };
}

test('served latency: each observation is labelled by the model and version that answered', async () => {
  const { latency, counts } = servedLatency();
  latency.observe({ model: 'wine', version: '2' }, 0.0005);
  latency.observe({ model: 'wine', version: '2' }, 0.002);
  latency.observe({ model: 'wine', version: '1' }, 0.0005);
  latency.observe({ model: 'iris', version: '1' }, 0.0005);
  assert.deepEqual(await counts(), { 'wine/2': 2, 'wine/1': 1, 'iris/1': 1 });
});

test('served latency: only the series of the kept versions (the active and previous slots) stay; a removed one starts afresh when served again', async () => {
  const { latency, counts } = servedLatency();
  for (const version of ['1', '2', '3']) latency.observe({ model: 'wine', version }, 0.0005);
  latency.keepOnly([{ model: 'wine', version: '3' }, { model: 'wine', version: '2' }, null]);
  assert.deepEqual(await counts(), { 'wine/2': 1, 'wine/3': 1 });
  latency.keepOnly([{ model: 'wine', version: '3' }, undefined]);
  assert.deepEqual(await counts(), { 'wine/3': 1 });
  latency.observe({ model: 'wine', version: '2' }, 0.0005);
  latency.observe({ model: 'wine', version: '3' }, 0.0005);
  assert.deepEqual(await counts(), { 'wine/2': 1, 'wine/3': 2 });
  latency.keepOnly([]);
  assert.deepEqual(await counts(), {});
});

test('served latency: a kept version with no series yet (at start, after a slot change) gets one at zero, before its first request; one already counting keeps its counts', async () => {
  const { latency, counts } = servedLatency();
  // At start, nothing served yet: the slots' versions are scraped from the first scrape, as the
  // unlabelled histogram is (else the recording rule reads the restarted agent's requests as the
  // active version's alone for a rate window).
  latency.keepOnly([{ model: 'wine', version: '2' }, { model: 'wine', version: '1' }]);
  assert.deepEqual(await counts(), { 'wine/2': 0, 'wine/1': 0 });
  latency.observe({ model: 'wine', version: '2' }, 0.0005);
  latency.keepOnly([{ model: 'wine', version: '2' }, { model: 'wine', version: '1' }]);
  assert.deepEqual(await counts(), { 'wine/2': 1, 'wine/1': 0 });
  // A promotion of 3: 3 gets its series at once, 1 leaves both slots.
  latency.keepOnly([{ model: 'wine', version: '3' }, { model: 'wine', version: '2' }]);
  assert.deepEqual(await counts(), { 'wine/3': 0, 'wine/2': 1 });
});
