// Builds the compiled test tree that `npm test` runs: the repository's TypeScript, transformed once
// to JavaScript by esbuild (what tsx does at every import, in every process), beside an unchanged
// copy of every source file. Tests and the `fleetprune` processes they start then load plain
// JavaScript with no loader thread, which saves about half of each process's start-up CPU.
//
// Layout: node_modules/.cache/fleetprune-test-tree/run-<pid>/ mirrors the repository, one tree per
// run (two runs at once must not rebuild each other's tree); a run removes its tree when it ends,
// and trees of runs no longer running are removed at the next start. Each `x.ts` under the code
// folders is kept and gets an `x.js` beside it, whose relative `.ts` specifiers now say `.js`. The
// other top-level entries (deploy/, grafana/, package.json, ...) are symbolic links to the real
// ones, and so is node_modules, so packages resolve as from the repository itself.
import { transform } from 'esbuild';
import { bundleCli } from './cli-bundle.mjs';
import { copyFile, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SOURCE_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TREES = join(SOURCE_ROOT, 'node_modules', '.cache', 'fleetprune-test-tree');

/** The folders whose TypeScript is compiled; everything else at the top level is linked. */
const CODE_FOLDERS = ['bin', 'server', 'agent', 'shared', 'deploy', 'bench', 'test'];
/** Top-level entries neither compiled nor linked. */
const SKIPPED = new Set(['.git', 'node_modules', 'tmp', ...CODE_FOLDERS]);

/** A relative specifier that names a TypeScript file: './x.ts', "../y/z.ts". */
const TS_SPECIFIER = /(['"])(\.{1,2}\/[^'"\n]*?)\.ts\1/g;

async function* filesUnder(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(path);
    else if (entry.isFile()) yield path;
  }
}

async function compilerOptions() {
  // tsx hands esbuild the project's tsconfig; so does this, so both compile alike.
  const tsconfig = JSON.parse(await readFile(join(SOURCE_ROOT, 'tsconfig.json'), 'utf8'));
  return { compilerOptions: tsconfig.compilerOptions };
}

function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/** Removes the trees of runs that are no longer running (killed before they could remove theirs). */
async function removeStaleTrees() {
  const entries = await readdir(TREES).catch(() => []);
  for (const entry of entries) {
    const pid = /^run-(\d+)$/.exec(entry)?.[1];
    if (pid === undefined || !isRunning(Number(pid))) await rm(join(TREES, entry), { recursive: true, force: true });
  }
}

/** Builds this process's tree from scratch (about 2 s), with the fleetprune command bundled (cli-bundle.mjs) unless told not to, and returns its root. */
export async function buildTestTree({ bundleCli: bundled = true } = {}) {
  await removeStaleTrees();
  const TREE_ROOT = join(TREES, `run-${process.pid}`);
  await rm(TREE_ROOT, { recursive: true, force: true });
  await mkdir(TREE_ROOT, { recursive: true });
  const tsconfigRaw = await compilerOptions();
  const jobs = [];
  for (const folder of CODE_FOLDERS) {
    for await (const file of filesUnder(join(SOURCE_ROOT, folder))) {
      const target = join(TREE_ROOT, relative(SOURCE_ROOT, file));
      jobs.push(
        (async () => {
          await mkdir(dirname(target), { recursive: true });
          await copyFile(file, target);
          if (!file.endsWith('.ts') || file.endsWith('.d.ts')) return;
          const source = await readFile(file, 'utf8');
          const { code } = await transform(source, {
            loader: 'ts',
            format: 'esm',
            target: 'node20',
            tsconfigRaw,
            sourcemap: 'inline',
            // Mappings only: stack traces name the .ts files and lines without the TypeScript text
            // embedded again in every .js file (half of the tree's bytes, read and, under
            // --enable-source-maps, parsed by every test process: about 0.1 CPU-s each).
            sourcesContent: false,
            sourcefile: file,
          });
          await writeFile(target.slice(0, -'.ts'.length) + '.js', code.replace(TS_SPECIFIER, '$1$2.js$1'));
        })(),
      );
    }
  }
  await Promise.all(jobs);
  for (const entry of await readdir(SOURCE_ROOT)) {
    if (!SKIPPED.has(entry)) await symlink(join(SOURCE_ROOT, entry), join(TREE_ROOT, entry));
  }
  await symlink(join(SOURCE_ROOT, 'node_modules'), join(TREE_ROOT, 'node_modules'), 'dir');
  if (bundled) await bundleCli(TREE_ROOT);
  return TREE_ROOT;
}

/** Removes a tree buildTestTree() returned. */
export function removeTestTree(root) {
  return rm(root, { recursive: true, force: true });
}
