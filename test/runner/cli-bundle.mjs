// The `fleetprune` command of the compiled test tree (test-tree.mjs), bundled: the suite starts
// about 250 fleetprune processes (servers, agents, prune runs, CLI calls), and each spent most of
// its start-up loading modules one file at a time: the repository's own (about 330) and its
// packages' (about 860 for a server, CommonJS mostly). esbuild bundles them into a few chunks (code
// splitting keeps what the CLI imports lazily, such as the server behind `fleetprune server`, out
// of the commands that do not need it), and the tree's bin/fleetprune.js imports those instead.
// Measured on this project's 2-core machines: a server's start and stop took 1.26 CPU-s where it
// took 1.70, `fleetprune --help` 0.59 where 0.87.
//
// What the bundle keeps as it was: bundle-options.mjs. Users run the TypeScript through tsx
// (bin/fleetprune.js); test/runner/source-tree.test.ts checks that path, and test/deploy the
// agent's own bundle (deploy/build/agent-bundle.ts).
import { build } from 'esbuild';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleOptions } from './bundle-options.mjs';

/**
 * Bundles TREE_ROOT/server/cli/main.js into TREE_ROOT/bin/fleetprune-bundle/ and makes
 * TREE_ROOT/bin/fleetprune.js import it.
 */
export async function bundleCli(treeRoot) {
  await build(bundleOptions({ main: join(treeRoot, 'server', 'cli', 'main.js') }, join(treeRoot, 'bin', 'fleetprune-bundle')));
  await writeFile(
    join(treeRoot, 'bin', 'fleetprune.js'),
    `#!/usr/bin/env node\n// The test tree's launcher (test/runner/cli-bundle.mjs): the bundled CLI.\nconst { main } = await import('./fleetprune-bundle/main.js');\nprocess.exitCode = await main(process.argv);\n`,
  );
}
