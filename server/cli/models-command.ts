import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { readManifest } from '../../shared/artifact/read-artifact.ts';
import { checkArtifactFiles } from '../../shared/artifact/verify-artifact.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';

interface GrpcVersion {
  model: string;
  version: string;
  seq: number;
  artifact_id: string;
  parent_model: string;
  parent_version: string;
  epsilon?: number;
  metrics_json: string;
  aliases: string[];
  retired: boolean;
  created_at: string;
  created_by: string;
  data_fingerprint: string;
  manifest_json: string;
}

const UPLOAD_CHUNK = 256 * 1024;
/**
 * Versions asked for per ListVersions call (the server allows up to 1000). Each carries its
 * manifest, and the reply must fit the client's default 4 MiB receive limit.
 */
const VERSIONS_PAGE = 200;

export function registerModelsCommand(program: Command): void {
  const models = program.command('models').description('the model registry (over gRPC)');

  withConnectionOptions(models.command('push <dir>').description('upload a signed artifact directory and register it as a new version'))
    .option('--name <name>', 'model name (default: the manifest name)')
    .action(async (dir: string, flags: ConnectionFlags & { name?: string }) => {
      const manifest = await readManifest(dir);
      // A missing or changed file is named here, before anything is uploaded.
      const damaged = await checkArtifactFiles(dir, manifest);
      if (damaged.length > 0) throw new UserError(`cannot push ${dir}: ${damaged.join('; ')}`);
      await withConnection(flags, async (connection) => {
        const name = flags.name ?? manifest.name;
        // The server refuses an untrusted or conflicting artifact before any file is sent, and
        // says which files it already has.
        const check = await connection.unary<{ missing_sha256: string[] }>('ModelRegistry', 'CheckPush', { name, manifest_json: JSON.stringify(manifest) });
        const missing = new Set(check.missing_sha256);
        for (const [path, file] of Object.entries(manifest.files)) {
          if (!missing.has(file.sha256)) continue;
          try {
            await connection.upload('Blobs', 'UploadBlob', chunks(join(dir, path), file.sha256));
          } catch (error) {
            if (error instanceof UserError) throw new UserError(`uploading ${path}: ${error.message}`, { exitCode: error.exitCode, cause: error });
            throw error;
          }
        }
        const version = await connection.unary<GrpcVersion>('ModelRegistry', 'PushVersion', {
          name,
          manifest_json: JSON.stringify(manifest),
        });
        process.stdout.write(`registered ${version.model}@${version.version} (artifact ${version.artifact_id})\n`);
      });
    });

  withConnectionOptions(models.command('list [name]').description('list models, or the versions of one model')).action(
    async (name: string | undefined, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        if (name === undefined) {
          const { models: all } = await connection.unary<{ models: { name: string; version_count: number; latest_version: string }[] }>(
            'ModelRegistry',
            'ListModels',
            {},
          );
          if (all.length === 0) process.stdout.write('no models\n');
          for (const model of all) process.stdout.write(`${model.name}\t${model.version_count} versions\tlatest ${model.latest_version || '-'}\n`);
          return;
        }
        // One page at a time after the last seq seen, until a short (or empty) page.
        for (let afterSeq = 0; ; ) {
          const { versions } = await connection.unary<{ versions: GrpcVersion[] }>('ModelRegistry', 'ListVersions', {
            name,
            after_seq: afterSeq,
            limit: VERSIONS_PAGE,
          });
          for (const version of versions) process.stdout.write(`${formatVersionLine(version)}\n`);
          if (versions.length < VERSIONS_PAGE) break;
          afterSeq = versions[versions.length - 1]!.seq;
        }
      });
    },
  );

  withConnectionOptions(
    models
      .command('show')
      .description('show NAME[@VERSION|@ALIAS] (default: latest)')
      .argument('<ref>', 'NAME, NAME@VERSION or NAME@ALIAS', (ref: string) => splitRef(ref, 'latest')),
  )
    .option('--json', 'print the version as JSON')
    .action(async ([name, version]: [string, string], flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const found = await connection.unary<GrpcVersion>('ModelRegistry', 'GetVersion', { name, ref: version });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify({ ...found, manifest: JSON.parse(found.manifest_json), metrics: JSON.parse(found.metrics_json) }, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          [
            `${found.model}@${found.version}${found.aliases.length ? ` (${found.aliases.join(', ')})` : ''}${found.retired ? ' [retired]' : ''}`,
            `artifact   ${found.artifact_id}`,
            `parent     ${found.parent_model ? `${found.parent_model}@${found.parent_version}` : '-'}`,
            `epsilon    ${found.epsilon ?? '-'}`,
            `data       ${found.data_fingerprint}`,
            `metrics    ${found.metrics_json}`,
            `created    ${found.created_at} by ${found.created_by}`,
          ].join('\n') + '\n',
        );
      });
    });

  withConnectionOptions(
    models
      .command('alias')
      .description('point ALIAS (candidate, production) at NAME@VERSION')
      .argument('<ref>', 'NAME@VERSION', (ref: string) => splitRef(ref, null))
      .argument('<alias>', 'candidate or production'),
  ).action(
    async ([name, version]: [string, string], alias: string, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        await connection.unary('ModelRegistry', 'SetAlias', { name, alias, version });
        process.stdout.write(`${name}:${alias} → ${version}\n`);
      });
    },
  );
}

/**
 * NAME@VERSION as [name, version] (NAME alone gives `fallback`, or is refused without one). An empty
 * name or version is refused here: the server would read an empty version as "latest" or, for
 * an alias, as "clear it". Commander reports the error naming the argument (exit 2).
 */
function splitRef(ref: string, fallback: string | null): [string, string] {
  const expected = fallback === null ? 'NAME@VERSION' : 'NAME[@VERSION|@ALIAS]';
  const at = ref.indexOf('@');
  if (at < 0) {
    if (fallback === null) throw new InvalidArgumentError(`expected ${expected}`);
    if (ref === '') throw new InvalidArgumentError(`expected ${expected}: the name is empty`);
    return [ref, fallback];
  }
  const [name, version] = [ref.slice(0, at), ref.slice(at + 1)];
  if (name === '') throw new InvalidArgumentError(`expected ${expected}: the name before "@" is empty`);
  if (version === '') throw new InvalidArgumentError(`expected ${expected}: the version after "@" is empty`);
  return [name, version];
}

function formatVersionLine(version: GrpcVersion): string {
  const tags = [...version.aliases, ...(version.retired ? ['retired'] : [])];
  const parent = version.parent_model ? `parent ${version.parent_model}@${version.parent_version}` : 'no parent';
  return `${version.model}@${version.version}\t${version.artifact_id.slice(0, 12)}\t${parent}\t${tags.join(',') || '-'}\t${version.created_at}`;
}

/** The file in upload messages; a read error (the file went away since it was checked) is a UserError naming it. */
async function* chunks(path: string, sha256: string): AsyncIterable<{ sha256: string; data: Buffer }> {
  let first = true;
  try {
    for await (const piece of createReadStream(path, { highWaterMark: UPLOAD_CHUNK }) as AsyncIterable<Buffer>) {
      yield { sha256: first ? sha256 : '', data: piece };
      first = false;
    }
  } catch (error) {
    throw new UserError(`cannot read ${path} (${errorMessage(error)})`, { cause: error });
  }
  if (first) yield { sha256, data: Buffer.alloc(0) };
}
