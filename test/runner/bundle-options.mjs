// What the test tree's bundles (cli-bundle.mjs, test-bundle.mjs) are built with: esbuild, from the
// tree's compiled JavaScript, with every package in but those that load files of their own by path.
//
// A bundle must not change what a module sees of its own place:
// - a module finding files beside itself (`new URL('./x.proto', import.meta.url)`, createRequire,
//   `__dirname` in a CommonJS package) still finds them: each file's own URL, path and folder are
//   written into it before it is bundled, so they name the file in the tree, not the chunk (and
//   test/helpers/cli.ts still sees a `.js` file of the compiled tree);
// - packages with native parts or files loaded by path (SQLite, onnxruntime, TensorFlow.js and its
//   WASM, esbuild, Chromium's driver) stay out of the bundle and load as they do from the tree;
// - worker threads and child processes start from their entry files in the tree, unbundled.
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Packages loaded as they are: native addons, WASM and binaries found by path, optional peers. */
const EXTERNAL = ['better-sqlite3', 'onnxruntime-node', '@tensorflow/*', 'esbuild', 'tsx', 'pg-native', 'playwright-core'];

/** `import.meta.url` and the rest, and CommonJS's `__dirname`/`__filename`, as references to replace. */
const FILE_LOCAL = /\bimport\.meta\.(?:url|dirname|filename)\b|\b__dirname\b|\b__filename\b/g;

/** Replaces each file's location-dependent references with its own location, as literals. */
const keepFileLocations = {
  name: 'keep-file-locations',
  setup(esbuild) {
    esbuild.onLoad({ filter: /\.[cm]?js$/ }, async ({ path }) => {
      const source = await readFile(path, 'utf8');
      if (source.search(FILE_LOCAL) === -1) return undefined;
      const literals = {
        'import.meta.url': JSON.stringify(pathToFileURL(path).href),
        'import.meta.dirname': JSON.stringify(dirname(path)),
        'import.meta.filename': JSON.stringify(path),
        __dirname: JSON.stringify(dirname(path)),
        __filename: JSON.stringify(path),
      };
      return { contents: source.replace(FILE_LOCAL, (reference) => literals[reference]), loader: 'js' };
    });
  },
};

/** esbuild options for a split ES-module bundle of `entryPoints` into `outdir`. */
export function bundleOptions(entryPoints, outdir) {
  return {
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    chunkNames: 'chunks/[hash]',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // The ES module builds where a package has one (jsonc-parser's UMD build requires by path).
    mainFields: ['module', 'main'],
    // The tree's .js files, never the .ts beside each.
    resolveExtensions: ['.js', '.mjs', '.cjs', '.json'],
    external: EXTERNAL,
    // Bundled CommonJS packages call require() for node's own modules.
    banner: { js: "import { createRequire as fleetpruneCreateRequire } from 'node:module'; const require = fleetpruneCreateRequire(import.meta.url);" },
    // Linked, so a process reads a chunk's map only when a stack trace is mapped (--enable-source-maps),
    // through the tree's own maps, to the TypeScript lines.
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'error',
    plugins: [keepFileLocations],
  };
}
