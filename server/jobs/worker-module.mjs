// Loads a worker thread's TypeScript module. Worker threads do not inherit the tsx loader that
// bin/fleetprune.js registers in the main thread, so a worker registers it itself. In a compiled
// tree (the one `npm test` builds, test/runner/test-tree.mjs) the module's JavaScript sits beside
// it and is loaded as it is, with no loader.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Imports `<name>.js` next to `base` if it is there, otherwise `<name>.ts` through tsx. */
export async function importWorkerModule(name, base) {
  const compiled = new URL(`./${name}.js`, base);
  if (existsSync(compiled)) return import(compiled.href);
  const { register } = await import('tsx/esm/api');
  // fleetprune's own tsconfig, as bin/fleetprune.js: not the working directory's (its `paths`).
  register({ tsconfig: fileURLToPath(new URL('../../tsconfig.json', import.meta.url)) });
  return import(new URL(`./${name}.ts`, base).href);
}
