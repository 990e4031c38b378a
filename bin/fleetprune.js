#!/usr/bin/env node
// Launcher: fleetprune is written in TypeScript and runs through tsx's loader, so a fresh clone
// needs no build step (`npm ci && npm start`). In a compiled tree (the one `npm test` builds,
// test/runner/test-tree.mjs), main.js sits beside main.ts and is loaded as it is, with no loader.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

/** Whether `dir` is a directory this process may create files in. */
function writableDirectory(dir) {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

const compiled = new URL('../server/cli/main.js', import.meta.url);
let entry = compiled.href;
if (!existsSync(compiled)) {
  // tsx caches what it compiles under TMPDIR: one that is missing, a file or read-only stopped
  // every command (--version too) with tsx's stack trace. Without it, tsx compiles in memory.
  if (!writableDirectory(tmpdir())) process.env.TSX_DISABLE_CACHE = '1';
  const { register } = await import('tsx/esm/api');
  // This package's own tsconfig: tsx otherwise reads the working directory's, whose `paths` could
  // point fleetprune's imports (commander, say) at another project's node_modules.
  register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
  entry = new URL('../server/cli/main.ts', import.meta.url).href;
}
const { main } = await import(entry);
process.exitCode = await main(process.argv);
