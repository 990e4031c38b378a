/**
 * The entry of the agent bundle (deploy/build/agent-bundle.ts): checks that the npm packages the
 * bundled agent imports are installed where node looks for them from here, then runs it. The
 * bundle's own imports are static: a package missing there stopped node before any agent code ran,
 * with a stack trace naming one package. Imports nothing but node's own modules.
 */
/** Set by the build: the npm packages the bundled agent imports, and its file beside this one. */
declare const AGENT_PACKAGES: readonly string[];
declare const AGENT_CORE: string;

const missing = AGENT_PACKAGES.filter((name) => {
  try {
    import.meta.resolve(name);
    return false;
  } catch (error) {
    // A package without a main export (only subpaths) is there: only "not found" is missing.
    return (error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
  }
});
if (missing.length > 0) {
  const dir = decodeURIComponent(new URL('.', import.meta.url).pathname);
  process.stderr.write(
    `fleetprune-agent: npm packages it needs are not installed (${missing.join(', ')}): ` +
      `run \`npm install --omit=dev\` in ${dir} (its package.json lists them), or \`npm ci --omit=dev\` in the fleetprune checkout it was built in\n`,
  );
  process.exit(2);
}
await import(AGENT_CORE);
