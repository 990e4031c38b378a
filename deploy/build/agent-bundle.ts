/**
 * Builds the standalone edge agent: agent/main.ts and the shared code it uses, bundled by esbuild
 * into one ES module that a device runs with plain node. npm packages stay external, so native
 * modules such as onnxruntime-node load as usual; the device installs them, either with
 * `npm ci --omit=dev` in a checkout (the build's place) or, in the output directory alone, with
 * `npm install --omit=dev` from the package.json written beside the bundle (the packages the
 * bundle imports, at the versions built with: no server, pruning or native SQLite packages).
 *
 *   npm run build:agent [-- --out FILE]      (default dist/fleetprune-agent.mjs)
 *
 * FILE is a launcher (agent/bundle-launcher.ts): it names every package missing in one line and
 * exit code 2, where the bundle's static imports stopped node with a stack trace, and then imports
 * the bundle, FILE with `-core` before `.mjs` (and its source map).
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { FLEETPRUNE_VERSION } from '../../shared/cli/version.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const AGENT_ENTRY = resolve(REPO_ROOT, 'agent/main.ts');
const LAUNCHER_ENTRY = resolve(REPO_ROOT, 'agent/bundle-launcher.ts');
export const DEFAULT_AGENT_BUNDLE = resolve(REPO_ROOT, 'dist/fleetprune-agent.mjs');
const NPMRC_LINE = 'onnxruntime-node-install=skip';
/** The name the build gives the package.json it writes beside the bundle (one of another name is never overwritten). */
export const AGENT_PACKAGE_NAME = 'fleetprune-agent';

export interface AgentBundle {
  /** The launcher node runs. */
  outfile: string;
  /** The bundled agent the launcher imports. */
  corefile: string;
  /** The bundled agent's size. */
  bytes: number;
  /** Repository files compiled into the bundle, relative to the repository root. */
  sources: string[];
  /** npm packages the bundle imports at run time. */
  packages: string[];
  /** The package.json written beside it, or why none was. */
  packageJson: { path: string; written: boolean; reason?: string };
}

export async function buildAgentBundle(outfile = DEFAULT_AGENT_BUNDLE): Promise<AgentBundle> {
  const outDir = dirname(outfile);
  await mkdir(outDir, { recursive: true });
  const corefile = join(outDir, `${basename(outfile).replace(/\.m?js$/, '')}-core.mjs`);
  const result = await build({
    entryPoints: [AGENT_ENTRY],
    outfile: corefile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    legalComments: 'none',
    metafile: true,
    logLevel: 'silent',
    absWorkingDir: REPO_ROOT,
  });
  const output = Object.entries(result.metafile.outputs).find(([path]) => path.endsWith('.mjs'))![1];
  const packages = new Set<string>();
  for (const { path, external } of output.imports) {
    if (external && !path.startsWith('node:')) packages.add(path.startsWith('@') ? path.split('/').slice(0, 2).join('/') : path.split('/')[0]!);
  }
  const sorted = [...packages].sort();
  const packageJson = await writeAgentPackageJson(outDir, sorted, basename(outfile));
  await build({
    entryPoints: [LAUNCHER_ENTRY],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    legalComments: 'none',
    logLevel: 'silent',
    absWorkingDir: REPO_ROOT,
    banner: { js: '#!/usr/bin/env node' },
    define: { AGENT_PACKAGES: JSON.stringify(sorted), AGENT_CORE: JSON.stringify(`./${basename(corefile)}`), AGENT_PACKAGE_JSON: JSON.stringify(packageJson.written) },
    // Imported as the file beside it at run time, not bundled again.
    external: [`./${basename(corefile)}`],
  });
  await chmod(outfile, 0o755);
  return {
    outfile,
    corefile,
    bytes: output.bytes,
    sources: Object.keys(output.inputs).map((path) => relative(REPO_ROOT, resolve(REPO_ROOT, path))).sort(),
    packages: sorted,
    packageJson,
  };
}

/**
 * package.json (and .npmrc) beside the bundle: the packages it imports at the versions installed
 * here, so that the output directory alone installs what the agent needs. A package.json that is
 * not the build's own (--out into a project) is left as it is.
 */
async function writeAgentPackageJson(outDir: string, packages: readonly string[], launcher: string): Promise<AgentBundle['packageJson']> {
  const path = join(outDir, 'package.json');
  const existing = await readFile(path, 'utf8').then(
    (text) => {
      try {
        return (JSON.parse(text) as { name?: unknown }).name ?? null;
      } catch {
        return null;
      }
    },
    () => undefined,
  );
  if (existing !== undefined && existing !== AGENT_PACKAGE_NAME) {
    return { path, written: false, reason: `${path} is another project's (name ${JSON.stringify(existing)}): not replaced` };
  }
  const dependencies: Record<string, string> = {};
  for (const name of packages) {
    const manifest = JSON.parse(await readFile(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
    dependencies[name] = manifest.version;
  }
  // The root's allowScripts for the packages listed (onnxruntime-node's install step): npm warns
  // about an install script no allowScripts entry covers, as if the operator had to act on it.
  const root = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
  const allowScripts = Object.fromEntries(Object.entries(root.allowScripts ?? {}).filter(([name]) => name in dependencies));
  const manifest = {
    name: AGENT_PACKAGE_NAME,
    version: FLEETPRUNE_VERSION,
    description: 'The fleetprune edge agent (built by npm run build:agent): `npm install --omit=dev` here installs what it imports',
    private: true,
    type: 'module',
    license: 'Apache-2.0',
    engines: { node: '>=20' },
    bin: { 'fleetprune-agent': launcher },
    dependencies,
    ...(Object.keys(allowScripts).length > 0 ? { allowScripts } : {}),
  };
  await writeFile(path, `${JSON.stringify(manifest, null, 2)}\n`);
  // onnxruntime-node's install step would download GPU libraries: its CPU binaries ship in the
  // package. Added to an .npmrc already there (registry settings, a token), never replacing it.
  const npmrc = join(outDir, '.npmrc');
  const current = await readFile(npmrc, 'utf8').catch(() => '');
  if (!/^\s*onnxruntime-node-install\s*=/m.test(current)) await writeFile(npmrc, `${current}${current === '' || current.endsWith('\n') ? '' : '\n'}${NPMRC_LINE}\n`);
  return { path, written: true };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const at = process.argv.indexOf('--out');
  const outfile = at >= 0 && process.argv[at + 1] ? resolve(process.argv[at + 1]!) : DEFAULT_AGENT_BUNDLE;
  try {
    const bundle = await buildAgentBundle(outfile);
    process.stdout.write(
      `${relative(process.cwd(), bundle.outfile)} (and ${basename(bundle.corefile)}): ${(bundle.bytes / 1024).toFixed(0)} KiB, ${bundle.sources.length} source files; ` +
        `needs ${bundle.packages.join(', ')}\n`,
    );
    process.stdout.write(bundle.packageJson.written ? `${relative(process.cwd(), bundle.packageJson.path)}: lists them; \`npm install --omit=dev\` beside it installs them\n` : `note: ${bundle.packageJson.reason}\n`);
  } catch (error) {
    process.stderr.write(`build:agent: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
