#!/usr/bin/env node
// Launcher: fleetprune is written in TypeScript and runs through tsx's loader, so a fresh clone
// needs no build step (`npm ci && npm start`). In a compiled tree (the one `npm test` builds,
// test/runner/test-tree.mjs), main.js sits beside main.ts and is loaded as it is, with no loader.
import { existsSync } from 'node:fs';

const compiled = new URL('../server/cli/main.js', import.meta.url);
let entry = compiled.href;
if (!existsSync(compiled)) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = new URL('../server/cli/main.ts', import.meta.url).href;
}
const { main } = await import(entry);
process.exitCode = await main(process.argv);
