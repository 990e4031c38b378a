import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type { ServerModule } from '../app/server-module.ts';
import { answerOtherMethods } from '../http/other-methods.ts';

const UI_ENTRY = fileURLToPath(new URL('./ui/main.ts', import.meta.url));
const UI_CSS = fileURLToPath(new URL('./ui/dashboard.css', import.meta.url));
const INDEX_HTML = fileURLToPath(new URL('./ui/index.html', import.meta.url));

export interface DashboardAssets {
  html: string;
  js: string;
  css: string;
}

/**
 * The operator dashboard at /dashboard/: plain TypeScript (server/dashboard/ui) bundled by esbuild,
 * with uPlot for charts. It talks to the same REST API as everyone else, with the token the
 * operator enters. The bundle is built once, at the first request for it, not at start-up: many
 * servers (headless fleets, scripted control planes, tests) never serve it, and loading esbuild
 * and bundling costs every start about half a second of CPU. A build that fails answers 500 (and
 * is logged by the error handler); the next request tries again.
 */
/**
 * Defence in depth behind the views' escaping: only the bundled script runs (no inline handlers,
 * no injected <script>), no injected style markup, nothing is fetched from elsewhere, and no other
 * site may frame the page. (uPlot sizes its elements through the CSSOM, which style-src allows.)
 */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** `bundle` replaces the esbuild build (tests). */
export function dashboardModule(options: { bundle?: () => Promise<DashboardAssets> } = {}): ServerModule {
  const bundle = options.bundle ?? bundleAssets;
  let built: Promise<DashboardAssets> | undefined;
  const assets = (): Promise<DashboardAssets> =>
    (built ??= bundle().catch((error: unknown) => {
      built = undefined;
      throw error;
    }));
  const router = express.Router({ strict: true });
  router.get('/', (_req, res) => res.redirect(302, '/dashboard/'));
  router.get('/dashboard', (_req, res) => res.redirect(301, '/dashboard/'));
  // Express 5 hands a rejected handler to the error handler: a failed build is a logged 500.
  router.get('/dashboard/', async (_req, res) => {
    const { html } = await assets();
    res.type('html').set({ 'Cache-Control': 'no-cache', 'Content-Security-Policy': CONTENT_SECURITY_POLICY }).send(html);
  });
  router.get('/dashboard/app.js', async (_req, res) => {
    const { js } = await assets();
    res.type('application/javascript').set('Cache-Control', 'no-cache').send(js);
  });
  router.get('/dashboard/app.css', async (_req, res) => {
    const { css } = await assets();
    res.type('text/css').set('Cache-Control', 'no-cache').send(css);
  });
  // POST /dashboard/ is a 405 naming GET, as on the API, not a 404 saying there is no such page.
  answerOtherMethods(router, ['/', '/dashboard', '/dashboard/', '/dashboard/app.js', '/dashboard/app.css'].map((path) => ({ path, method: 'get' as const })));
  return { name: 'dashboard', pages: router };
}

async function bundleAssets(): Promise<DashboardAssets> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: [UI_ENTRY],
    bundle: true,
    write: false,
    format: 'esm',
    target: 'es2022',
    minify: true,
    sourcemap: false,
    logLevel: 'silent',
  });
  const uplotCss = await readFile(createRequire(import.meta.url).resolve('uplot/dist/uPlot.min.css'), 'utf8');
  return {
    html: await readFile(INDEX_HTML, 'utf8'),
    js: result.outputFiles[0]!.text,
    css: `${uplotCss}\n${await readFile(UI_CSS, 'utf8')}`,
  };
}
