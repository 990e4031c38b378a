// The test files of a run, bundled (esbuild, code splitting: the modules two files share are one
// chunk, loaded once per process as before). Each test process loaded, one file at a time, the
// modules its files import: the repository's and their packages' (a server test: about 1,200
// files), and, under --enable-source-maps, parsed each compiled file's inline source map. Measured
// on this project's 2-core machines: test/server/http-refusals.test.ts's process took 3.18 CPU-s
// bundled where it took 3.91 from the tree's files.
//
// What the bundle keeps as it was: bundle-options.mjs. A file run straight from its source
// (node --import tsx --test FILE) is not bundled.
import { build } from 'esbuild';
import { join } from 'node:path';
import { bundleOptions } from './bundle-options.mjs';

/** Where the bundled test files go in a tree (test/helpers/cli.ts's nodeArgsFor looks there too). */
const BUNDLE_DIR = join('test', '.bundle');

/**
 * Programs the tests start as processes of their own (test/helpers/cli.ts's nodeArgsFor), bundled
 * beside the test files: a warm CLI runner starts in most test processes. One missing here runs
 * from the tree's files, as before.
 */
const HELPER_PROGRAMS = ['test/helpers/warm-cli-runner.ts', 'test/helpers/cli-batch-runner.ts', 'test/pruning/helpers/lock-contender.ts', 'test/rollout-api/helpers/fleet-server-main.ts'];

/**
 * Bundles `files` (repository-relative test/**\/*.test.ts paths, compiled in `tree`) and the
 * helper programs into TREE/test/.bundle/ and returns each test file's bundled entry (an absolute
 * path) by its name.
 */
export async function bundleTestFiles(tree, files) {
  const entryPoints = Object.fromEntries([...files, ...HELPER_PROGRAMS].map((file) => [file.replace(/\.ts$/, ''), join(tree, file.replace(/\.ts$/, '.js'))]));
  const outdir = join(tree, BUNDLE_DIR);
  await build(bundleOptions(entryPoints, outdir));
  return new Map(files.map((file) => [file, join(outdir, file.replace(/\.ts$/, '.js'))]));
}
