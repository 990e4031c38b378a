/**
 * The entry of the agent bundle (deploy/build/agent-bundle.ts): checks that the npm packages the
 * bundled agent imports are installed where node looks for them from here, then runs it. The
 * bundle's own imports are static: a package missing there stopped node before any agent code ran,
 * with a stack trace naming one package. Imports nothing but node's own modules.
 */
import { createRequire } from 'node:module';

/** Set by the build: the npm packages the bundled agent imports, its file beside this one, and whether a package.json listing them was written beside it. */
declare const AGENT_PACKAGES: readonly string[];
declare const AGENT_CORE: string;
declare const AGENT_PACKAGE_JSON: boolean;

// As the bundle's imports look: import.meta.resolve (Node 20.6 and later); before that require.resolve,
// which also looks in NODE_PATH and the global folders (so it may pass a package import then misses).
const resolve: (name: string) => unknown = typeof import.meta.resolve === 'function' ? (name) => import.meta.resolve(name) : createRequire(import.meta.url).resolve;
const missing = AGENT_PACKAGES.filter((name) => {
  try {
    resolve(name);
    return false;
  } catch (error) {
    // A package without the entry asked for (ERR_PACKAGE_PATH_NOT_EXPORTED) is there: only "not found" is missing.
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
  }
});
if (missing.length > 0) {
  const dir = decodeURIComponent(new URL('.', import.meta.url).pathname);
  const install = AGENT_PACKAGE_JSON ? `run \`npm install --omit=dev\` in ${dir} (its package.json lists them), or ` : '';
  process.stderr.write(`fleetprune-agent: npm packages it needs are not installed (${missing.join(', ')}): ${install}run \`npm ci --omit=dev\` in the fleetprune checkout it was built in\n`);
  process.exit(2);
}
await import(AGENT_CORE);
