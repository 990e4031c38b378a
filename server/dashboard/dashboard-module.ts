import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { build } from 'esbuild';
import type { ServerModule } from '../app/server-module.ts';

const UI_ENTRY = fileURLToPath(new URL('./ui/main.ts', import.meta.url));
const UI_CSS = fileURLToPath(new URL('./ui/dashboard.css', import.meta.url));
const INDEX_HTML = fileURLToPath(new URL('./ui/index.html', import.meta.url));

interface Assets {
  html: string;
  js: string;
  css: string;
}

/**
 * The operator dashboard at /dashboard/: plain TypeScript (server/dashboard/ui) bundled once at
 * start-up by esbuild, with uPlot for charts. It talks to the same REST API as everyone else,
 * with the token the operator enters.
 */
/**
 * Defence in depth behind the views' escaping: only the bundled script runs (no inline handlers,
 * no injected <script>), no injected style markup, nothing is fetched from elsewhere, and no other
 * site may frame the page. (uPlot sizes its elements through the CSSOM, which style-src allows.)
 */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function dashboardModule(): ServerModule {
  let assets: Assets | undefined;
  const router = express.Router({ strict: true });
  router.get('/', (_req, res) => res.redirect(302, '/dashboard/'));
  router.get('/dashboard', (_req, res) => res.redirect(301, '/dashboard/'));
  router.get('/dashboard/', (_req, res) => {
    res.type('html').set({ 'Cache-Control': 'no-cache', 'Content-Security-Policy': CONTENT_SECURITY_POLICY }).send(assets!.html);
  });
  router.get('/dashboard/app.js', (_req, res) => {
    res.type('application/javascript').set('Cache-Control', 'no-cache').send(assets!.js);
  });
  router.get('/dashboard/app.css', (_req, res) => {
    res.type('text/css').set('Cache-Control', 'no-cache').send(assets!.css);
  });
  return {
    name: 'dashboard',
    pages: router,
    async start() {
      assets = await bundleAssets();
    },
  };
}

async function bundleAssets(): Promise<Assets> {
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
