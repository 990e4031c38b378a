/**
 * Builds the standalone edge agent: agent/main.ts and the shared code it uses, bundled by esbuild
 * into one ES module that a device runs with plain node. npm packages stay external (the device
 * installs them with `npm ci --omit=dev`), so native modules such as onnxruntime-node load as usual.
 *
 *   npm run build:agent [-- --out FILE]      (default dist/fleetprune-agent.mjs)
 */
import { chmod, mkdir } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const AGENT_ENTRY = resolve(REPO_ROOT, 'agent/main.ts');
export const DEFAULT_AGENT_BUNDLE = resolve(REPO_ROOT, 'dist/fleetprune-agent.mjs');

export interface AgentBundle {
  outfile: string;
  bytes: number;
  /** Repository files compiled into the bundle, relative to the repository root. */
  sources: string[];
  /** npm packages the bundle imports at run time. */
  packages: string[];
}

export async function buildAgentBundle(outfile = DEFAULT_AGENT_BUNDLE): Promise<AgentBundle> {
  await mkdir(dirname(outfile), { recursive: true });
  const result = await build({
    entryPoints: [AGENT_ENTRY],
    outfile,
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
  await chmod(outfile, 0o755);
  const output = Object.entries(result.metafile.outputs).find(([path]) => path.endsWith('.mjs'))![1];
  const packages = new Set<string>();
  for (const { path, external } of output.imports) {
    if (external && !path.startsWith('node:')) packages.add(path.startsWith('@') ? path.split('/').slice(0, 2).join('/') : path.split('/')[0]!);
  }
  return {
    outfile,
    bytes: output.bytes,
    sources: Object.keys(output.inputs).map((path) => relative(REPO_ROOT, resolve(REPO_ROOT, path))).sort(),
    packages: [...packages].sort(),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const at = process.argv.indexOf('--out');
  const outfile = at >= 0 && process.argv[at + 1] ? resolve(process.argv[at + 1]!) : DEFAULT_AGENT_BUNDLE;
  try {
    const bundle = await buildAgentBundle(outfile);
    process.stdout.write(
      `${relative(process.cwd(), bundle.outfile)}: ${(bundle.bytes / 1024).toFixed(0)} KiB, ${bundle.sources.length} source files; ` +
        `needs ${bundle.packages.join(', ')}\n`,
    );
  } catch (error) {
    process.stderr.write(`build:agent: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
