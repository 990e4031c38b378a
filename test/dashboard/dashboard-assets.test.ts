import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import express, { type NextFunction, type Request, type Response } from 'express';
import { dashboardModule, type DashboardAssets } from '../../server/dashboard/dashboard-module.ts';

test('the dashboard is bundled at its first request, once for concurrent requests; a failed build answers 500 and the next request builds again', async (t) => {
  let builds = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const module = dashboardModule({
    bundle: async () => {
      builds++;
      if (builds === 1) throw new Error('esbuild: ui/main.ts: syntax error');
      await gate;
      return { html: '<!doctype html><title>fleetprune</title>', js: 'console.log(1)', css: 'body{}' } satisfies DashboardAssets;
    },
  });
  assert.equal(builds, 0, 'nothing is built before a request');
  const app = express();
  app.use(module.pages!);
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => res.status(500).json({ error: String((error as Error).message) }));
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const failed = await fetch(`${base}/dashboard/`);
  assert.equal(failed.status, 500);
  assert.equal(builds, 1);

  const pending = [fetch(`${base}/dashboard/`), fetch(`${base}/dashboard/app.js`), fetch(`${base}/dashboard/app.css`)];
  await new Promise((resolve) => setTimeout(resolve, 50));
  release();
  const [page, js, css] = await Promise.all(pending);
  assert.deepEqual([page!.status, js!.status, css!.status], [200, 200, 200]);
  assert.equal(await page!.text(), '<!doctype html><title>fleetprune</title>');
  assert.match(page!.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  assert.equal(await js!.text(), 'console.log(1)');
  assert.match(css!.headers.get('content-type') ?? '', /^text\/css/);
  assert.equal(builds, 2, 'one build after the failed one, shared by the three requests');
  await fetch(`${base}/dashboard/app.js`);
  assert.equal(builds, 2, 'and kept');
});
