import { formatMse, formatR2 } from '../../shared/model/scoring.ts';
import { TRAINING_FILE } from '../../shared/artifact/training-record.ts';
import { createReadStream, existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { InvalidArgumentError, type Command } from 'commander';
import { artifactId, type Manifest } from '../../shared/artifact/manifest.ts';
import { GENERAL_SUBDIR } from '../../shared/artifact/prune-output-names.ts';
import { assertArtifactDirectory, readManifest } from '../../shared/artifact/read-artifact.ts';
import { checkArtifactFiles } from '../../shared/artifact/verify-artifact.ts';
import { onStopSignals } from '../../shared/cli/stop-signals.ts';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { printable } from '../../shared/util/printable.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags, type ServerConnection } from './grpc-client.ts';
import { refuseEmpty } from './non-empty.ts';
import { formatTable } from './format-table.ts';
import { describeTrainingRecord, parseTrainingRecord, type TrainingRecord } from '../../shared/artifact/training-record.ts';
import { modelJson, versionDetailJson, versionJson, type GrpcModel, type GrpcVersion } from './json-views.ts';

const UPLOAD_CHUNK = 256 * 1024;
/** Times a push uploads what the server lacks before it gives up (see uploadAll). */
const UPLOAD_ROUNDS = 3;
/**
 * Versions asked for per ListVersions call (the server allows up to 1000). Each carries its
 * manifest; the CLI takes replies of any size (grpc-client.ts), as models of thousands of
 * features make pages of megabytes.
 */
const VERSIONS_PAGE = 200;

export function registerModelsCommand(program: Command): void {
  const models = program.command('models').description('the model registry (over gRPC)');

  withConnectionOptions(
    models
      .command('push <dir>')
      .description(
        'upload a signed artifact directory and register it as a new version; a pruned artifact whose parent is in DIR/general ' +
          '(as `fleetprune prune` writes them) and not registered yet gets its parent registered first (under its own name), so the pruned model is the newer version',
      ),
  )
    .option('--name <name>', 'model name: must be the manifest name, as devices refuse any other (default: the manifest name)')
    .action(async (dir: string, flags: ConnectionFlags & { name?: string }) => {
      refuseEmpty(flags.name, '--name', 'the manifest name');
      await assertArtifactDirectory(dir);
      const manifest = await readManifest(dir);
      // A missing or changed file is named here, before anything is uploaded.
      const damaged = await checkArtifactFiles(dir, manifest);
      if (damaged.length > 0) throw new UserError(`cannot push ${dir}: ${damaged.join('; ')}`);
      const parent = await parentInGeneral(dir, manifest);
      const name = flags.name ?? manifest.name;
      // Ctrl-C is one line saying what is registered: after the parent and before the pruned model,
      // `latest` is the general model (of the same name), and pushing again finishes the push.
      let registeredParent: string | undefined;
      /** The directory whose registration was sent and not answered yet, and the model it registers as. */
      let registering: { dir: string; model: string } | undefined;
      const sameModel = parent === undefined || parent.manifest.name === name;
      const stopListening = onStopSignals((signal) => {
        const state = registering
          ? `the server may have registered ${registering.dir} already (\`fleetprune models list ${registering.model}\` shows whether it did)`
          : registeredParent
            ? `the parent is registered as ${registeredParent}, ${dir} is not${sameModel ? ' (`latest` is the general model until it is)' : ''}; \`fleetprune models push ${dir}\` again registers it`
            : 'nothing was registered';
        process.stderr.write(`fleetprune: interrupted (${signal}): ${state}\n`);
        process.exit(128 + osConstants.signals[signal]);
      });
      try {
        await withConnection(flags, async (connection) => {
          // The server refuses an untrusted or conflicting artifact before any file is sent (and
          // before its parent is pushed), and says which files it already has.
          let check: PushCheck;
          try {
            check = await connection.unary<PushCheck>('ModelRegistry', 'CheckPush', { name, manifest_json: JSON.stringify(manifest) });
          } catch (error) {
            // Registered with all its files: its parent's may still be lost (the README pushes the pruned directory).
            const restoredParent = parent && isAlreadyRegistered(error) ? await restoreRegistered(connection, parent.manifest.name, parent) : null;
            if (restoredParent === 'unregistered') throw parentLeftUnregistered(error as UserError, parent!.dir, sameModel);
            if (restoredParent === null) throw error;
            process.stdout.write(`the parent ${restoredParent}\n`);
            return;
          }
          if (check.registered_as) {
            // Registered already, but the server has lost some of its files: sent again, nothing registered.
            const restoredParent = parent ? await restoreRegistered(connection, parent.manifest.name, parent) : null;
            if (restoredParent !== null && restoredParent !== 'unregistered') process.stdout.write(`the parent ${restoredParent}\n`);
            await uploadAll(connection, name, dir, manifest, check.missing_sha256, true);
            process.stdout.write(`${check.registered_as} is registered already (artifact ${artifactId(manifest)}); ${restoredFiles(manifest, check.missing_sha256)}\n`);
            return;
          }
          if (parent) registeredParent = await pushParent(connection, parent.manifest.name, parent, () => (registering = { dir: parent.dir, model: parent.manifest.name }));
          registering = undefined;
          await uploadAll(connection, name, dir, manifest, check.missing_sha256);
          registering = { dir, model: name };
          const version = await connection.unary<GrpcVersion>('ModelRegistry', 'PushVersion', {
            name,
            manifest_json: JSON.stringify(manifest),
          });
          process.stdout.write(`registered ${version.model}@${version.version} (artifact ${version.artifact_id})\n`);
          // Pushed without its parent (no general/ beside it), which the registry does not hold.
          const parentId = manifest.lineage.parentSha256;
          if (parentId && !parent && !version.parent_model) {
            process.stderr.write(
              `fleetprune: note: its parent (artifact ${parentId.slice(0, 12)}…) is not registered: its lineage shows it as not registered until it is; pushing it later (its prune output's general/) makes that model \`latest\` of ${version.model}\n`,
            );
          }
          // Registered, and said so: a check that cannot run (the server gone meanwhile) is a warning, not a failed push.
          const child = await registeredChild(connection, version).catch((error: unknown) => {
            process.stderr.write(`fleetprune: warning: could not check whether a version registered before was pruned from this one (\`latest\` would then be this one): ${errorMessage(error)}\n`);
            return undefined;
          });
          if (child) {
            process.stderr.write(
              `fleetprune: warning: ${child}, pruned from this artifact, was registered before it: \`latest\` of ${version.model} is now ${version.model}@${version.version}, the model it was pruned from (assign by version, or by the candidate or production alias)\n`,
            );
          }
        });
      } finally {
        stopListening();
      }
    });

  withConnectionOptions(models.command('list [name]').description('list models, or the versions of one model (with the status its last rollout gave it)'))
    .option('--json', 'print JSON (as GET /api/models, or GET /api/models/NAME/versions)')
    .action(async (name: string | undefined, flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        if (name === undefined) {
          const { models: all } = await connection.unary<{ models: GrpcModel[] }>('ModelRegistry', 'ListModels', {});
          if (flags.json) return void process.stdout.write(`${JSON.stringify({ models: all.map(modelJson) }, null, 2)}\n`);
          // stdout holds the table alone (for scripts); the note goes to stderr, as rollout list's does.
          if (all.length === 0) return void process.stderr.write('no models\n');
          process.stdout.write(formatTable([['MODEL', 'VERSIONS', 'LATEST'], ...all.map((model) => [model.name, String(model.version_count), model.latest_version || '-'])]));
          return;
        }
        // One page at a time after the last seq seen, until a short (or empty) page.
        const collected: GrpcVersion[] = [];
        for (let afterSeq = 0; ; ) {
          const { versions } = await connection.unary<{ versions: GrpcVersion[] }>('ModelRegistry', 'ListVersions', { name, after_seq: afterSeq, limit: VERSIONS_PAGE });
          collected.push(...versions);
          if (versions.length < VERSIONS_PAGE) break;
          afterSeq = versions[versions.length - 1]!.seq;
        }
        // Every page: none follow (the REST page's `more`).
        if (flags.json) return void process.stdout.write(`${JSON.stringify({ versions: collected.map(versionJson), more: false }, null, 2)}\n`);
        process.stdout.write(formatTable([['VERSION', 'ARTIFACT', 'PARENT', 'ALIASES', 'CREATED', 'STATUS'], ...collected.map(versionRow)]));
      });
    });

  withConnectionOptions(
    models
      .command('show')
      .description('show NAME[@VERSION|@ALIAS] (default: latest)')
      .argument('<ref>', 'NAME, NAME@VERSION or NAME@ALIAS', (ref: string) => splitRef(ref, 'latest')),
  )
    .option('--json', 'print the version as JSON (as GET /api/models/NAME/versions/REF)')
    .action(async ([name, version]: [string, string], flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const found = await connection.unary<GrpcVersion>('ModelRegistry', 'GetVersion', { name, ref: version });
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(versionDetailJson(found), null, 2)}\n`);
          return;
        }
        const architecture = sizeOf(found.manifest_json);
        const training = trainingOf(found.training_json);
        process.stdout.write(
          [
            `${found.model}@${found.version}${found.aliases.length ? ` (${found.aliases.join(', ')})` : ''}${found.retired ? ' [retired]' : ''}`,
            `artifact   ${found.artifact_id}`,
            `parent     ${parentRef(found, false) ?? '-'}`,
            `epsilon    ${found.epsilon ?? '-'}${found.epsilon !== null && found.epsilon !== undefined && architecture?.epsilonMode ? ` (${architecture.epsilonMode})` : ''}`,
            ...(architecture ? [`size       ${architecture.layers.join('-')} on ${architecture.inputs} inputs: ${architecture.params} params, ${architecture.flopsPerSample} FLOPs/sample`] : []),
            `data       ${found.data_fingerprint}`,
            ...(architecture?.method ? [`method     ${architecture.method}${architecture.seed !== null ? ` (seed ${architecture.seed})` : ''}`] : []),
            // From the artifact's training.json (none before it existed).
            ...(training && 'record' in training
              ? [`trained    ${describeTrainingRecord(training.record)}`]
              : training
                ? [`trained    not known: this command cannot read the record the server sent (${training.problem})`]
                : listsTrainingRecord(found.manifest_json)
                  ? [`trained    not known: the server sent no training record, though the artifact lists a ${TRAINING_FILE} (a server older than this command, or the server's copy missing, damaged or unreadable)`]
                  : []),
            // Which key signed it: a key rotated out of --trusted-key leaves the versions it signed to check.
            ...(architecture?.signedWith ? [`signed by  key ${architecture.signedWith}`] : []),
            `metrics    ${describeMetrics(found.metrics_json)}`,
            `status     ${found.status ? `${found.status}${found.status_reason ? `: ${found.status_reason}` : ''} (${found.status_at})` : '-'}`,
            `created    ${found.created_at} by ${found.created_by}`,
            // A manifest's own text (its data fingerprint, say) is the signer's: a line break or an
            // escape sequence in it must not add a line or reach the terminal.
          ].map(printable).join('\n') + '\n',
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

  withConnectionOptions(
    models
      .command('unalias')
      .description('clear ALIAS (candidate, production) of model NAME: no version is it any more (clearing production marks the version it pointed at withdrawn)')
      .argument('<name>', 'model name')
      .argument('<alias>', 'candidate or production'),
  ).action(async (name: string, alias: string, flags: ConnectionFlags) => {
    await withConnection(flags, async (connection) => {
      await connection.unary('ModelRegistry', 'SetAlias', { name, alias, version: '' });
      process.stdout.write(`${name}:${alias} cleared\n`);
    });
  });

  for (const [command, retired, description] of [
    ['retire', true, 'retire NAME@VERSION: it can no longer be assigned, aliased or rolled out (devices keep what they run); refused while it holds an alias or is a rollout\'s candidate'],
    ['unretire', false, 'make a retired NAME@VERSION assignable again'],
  ] as const) {
    withConnectionOptions(models.command(command).description(description).argument('<ref>', 'NAME@VERSION', (ref: string) => splitRef(ref, null))).action(
      async ([name, version]: [string, string], flags: ConnectionFlags) => {
        await withConnection(flags, async (connection) => {
          // Asked for what already holds, the server changes nothing (and audits nothing): said so, rather than a change.
          const before = await connection.unary<GrpcVersion>('ModelRegistry', 'GetVersion', { name, ref: version });
          const changed = await connection.unary<GrpcVersion>('ModelRegistry', 'SetRetired', { name, version, retired });
          const ref = `${changed.model}@${changed.version}`;
          if (before.retired === retired) process.stdout.write(`${ref} ${retired ? 'was retired already' : 'was not retired: assignable already'}; nothing changed\n`);
          else process.stdout.write(`${ref} ${changed.retired ? 'retired' : 'unretired: assignable again'}\n`);
        });
      },
    );
  }
}

/**
 * NAME@VERSION as [name, version] (NAME alone gives `fallback`, or is refused without one). An empty
 * name or version is refused here: the server would read an empty version as "latest" or, for
 * an alias, as "clear it". Commander reports the error naming the argument (exit 2).
 */
const REFS_NOT_VERSIONS = new Set(['candidate', 'production', 'latest']);

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
  // No version has these names (the registry refuses them): where only a version goes, an alias
  // was answered "no candidate alias" when unset, and "must not be candidate" when set.
  if (fallback === null && REFS_NOT_VERSIONS.has(version)) {
    throw new InvalidArgumentError(`expected ${expected}: "${version}" ${version === 'latest' ? 'names the newest version' : 'is an alias'}, not a version (\`fleetprune models show ${name}@${version}\` says which version it is)`);
  }
  return [name, version];
}

/** GetVersion's training_json as a record; undefined when empty (no training.json) or not one. */
function trainingOf(json: string | undefined): { record: TrainingRecord } | { problem: string } | undefined {
  if (!json) return undefined;
  return parseTrainingRecord(new TextEncoder().encode(json));
}

/** The layer sizes, parameters and FLOPs of a version's manifest (and its ε mode, method, seed and signer key), for `models show`; undefined if it does not say. */
function sizeOf(manifestJson: string): (Manifest['architecture'] & { epsilonMode: string | null; method: string | null; seed: number | null; signedWith: string | null }) | undefined {
  try {
    const manifest = JSON.parse(manifestJson) as Partial<Manifest>;
    const architecture = manifest.architecture;
    if (!architecture || !Array.isArray(architecture.layers)) return undefined;
    return {
      ...architecture,
      epsilonMode: manifest.lineage?.epsilonMode ?? null,
      method: typeof manifest.lineage?.method === 'string' ? manifest.lineage.method : null,
      seed: typeof manifest.lineage?.seed === 'number' ? manifest.lineage.seed : null,
      signedWith: typeof manifest.signature?.keyId === 'string' ? manifest.signature.keyId : null,
    };
  } catch {
    return undefined;
  }
}

/**
 * A row of `models list NAME`: NAME@VERSION, artifact, parent, aliases, created, and the status
 * its last rollout gave it, with `retired` when it is (else -).
 */
function versionRow(version: GrpcVersion): string[] {
  const status = [...(version.status ? [version.status] : []), ...(version.retired ? ['retired'] : [])].join(', ');
  return [`${version.model}@${version.version}`, version.artifact_id.slice(0, 12), parentRef(version, true) ?? '-', version.aliases.join(',') || '-', version.created_at, status || '-'];
}

/**
 * The manifest's test (and validation) scores on one line, as the prune report gives them:
 * `test accuracy 96.67% · validation accuracy 100.00%`, `test mse 2890.1, r² 0.512`. Anything
 * that does not read as scores is printed as it came.
 */
export function describeMetrics(metricsJson: string): string {
  let metrics: unknown;
  try {
    metrics = JSON.parse(metricsJson);
  } catch {
    return metricsJson;
  }
  if (typeof metrics !== 'object' || metrics === null) return metricsJson;
  const parts: string[] = [];
  for (const [split, scores] of Object.entries(metrics as Record<string, unknown>)) {
    if (typeof scores !== 'object' || scores === null) return metricsJson;
    const named = Object.entries(scores as Record<string, unknown>).map(([name, value]) => {
      if (typeof value !== 'number') return `${name} ${JSON.stringify(value)}`;
      if (name === 'accuracy') return `accuracy ${(value * 100).toFixed(2)}%`;
      // As prune, jobs show and the dashboard write them: r² with three decimals, an MSE to five digits.
      if (name === 'r2') return `r² ${formatR2(value)}`;
      return `${name} ${name === 'mse' ? formatMse(value) : Number(value.toPrecision(5))}`;
    });
    parts.push(`${split} ${named.join(', ')}`);
  }
  return parts.length > 0 ? parts.join(' · ') : '-';
}

/**
 * The parent as NAME@VERSION. A parent the registry does not hold (the manifest names its sha256,
 * but it was never pushed here) is named by its sha256, `short` to 12 digits, so the version does
 * not read as a model trained from scratch. Null for a version without a parent.
 */
function parentRef(version: GrpcVersion, short: boolean): string | null {
  if (version.parent_model) return `${version.parent_model}@${version.parent_version}`;
  if (!version.parent_artifact_id) return null;
  return `${short ? `${version.parent_artifact_id.slice(0, 12)}…` : version.parent_artifact_id} (not registered)`;
}

/**
 * The parent of a pruned artifact as `fleetprune prune` writes it, in DIR/general; undefined
 * when DIR is no pruned artifact or has no DIR/general. A DIR/general without its manifest, with
 * another artifact, or with damaged files, is refused (verify fails it too).
 */
async function parentInGeneral(dir: string, manifest: Manifest): Promise<{ dir: string; manifest: Manifest } | undefined> {
  const parentId = manifest.lineage.parentSha256;
  const generalDir = join(dir, GENERAL_SUBDIR);
  if (!parentId) return undefined;
  if (!existsSync(join(generalDir, 'manifest.json'))) {
    // A general/ beside a pruned artifact is its parent, as verify reads it: one without its manifest is damaged, not absent.
    if (existsSync(generalDir)) throw new UserError(`cannot push ${generalDir} (the parent of ${dir}): ${GENERAL_SUBDIR}/manifest.json is missing (remove ${GENERAL_SUBDIR}/ to push the artifact alone)`);
    return undefined;
  }
  const parent = await readManifest(generalDir);
  const held = artifactId(parent);
  // Another artifact there (a parent swapped in, or another run's): verify fails it, and push did so silently.
  if (held !== parentId) {
    throw new UserError(`cannot push ${generalDir} (the parent of ${dir}): it holds artifact ${held.slice(0, 12)}…, not this artifact's parent (${parentId.slice(0, 12)}…; remove ${GENERAL_SUBDIR}/ to push the artifact alone)`);
  }
  const damaged = await checkArtifactFiles(generalDir, parent);
  if (damaged.length > 0) throw new UserError(`cannot push ${generalDir} (the parent of ${dir}): ${damaged.join('; ')}`);
  return { dir: generalDir, manifest: parent };
}

/**
 * Registers the parent under `name` (its manifest's: a child pushed under another name was pruned
 * from that model's version) before its pruned child, so the child gets the higher version and
 * `latest` is the pruned model, and returns it as `name@version`. A parent already registered
 * (found so by the check, or by the registration when another push of it got there first) is
 * left as it is. `onRegistering` is called as its registration is sent.
 */
async function pushParent(connection: ServerConnection, name: string, parent: { dir: string; manifest: Manifest }, onRegistering: () => void): Promise<string> {
  const manifestJson = JSON.stringify(parent.manifest);
  try {
    const check = await connection.unary<PushCheck>('ModelRegistry', 'CheckPush', { name, manifest_json: manifestJson });
    if (check.registered_as) {
      await uploadAll(connection, name, parent.dir, parent.manifest, check.missing_sha256, true);
      process.stderr.write(`the parent in ${parent.dir} is already registered as ${check.registered_as}; ${restoredFiles(parent.manifest, check.missing_sha256)}\n`);
      return check.registered_as;
    }
    await uploadAll(connection, name, parent.dir, parent.manifest, check.missing_sha256);
    onRegistering();
    const version = await connection.unary<GrpcVersion>('ModelRegistry', 'PushVersion', { name, manifest_json: manifestJson });
    process.stdout.write(`registered ${version.model}@${version.version} (artifact ${version.artifact_id}; the parent, from ${parent.dir})\n`);
    return `${version.model}@${version.version}`;
  } catch (error) {
    const registered = error instanceof UserError ? /is already registered as (\S+)$/.exec(error.message) : null;
    if (registered && (error as UserError & { cause?: { code?: number } }).cause?.code === GrpcStatus.ALREADY_EXISTS) {
      process.stderr.write(`the parent in ${parent.dir} is already registered as ${registered[1]}\n`);
      return registered[1]!;
    }
    // Its upload's errors too: "uploading model.onnx" alone would read as the pruned model's file.
    if (error instanceof UserError) throw new UserError(`pushing the parent in ${parent.dir}: ${error.message}`, { exitCode: error.exitCode, cause: error });
    throw error;
  }
}

/**
 * Uploads the files the server lacks, then checks the push again (which marks every file it lists
 * as just used) until the server lacks none: a file collected while later ones were still
 * uploading (`blobs gc` with a --min-age shorter than the upload) is sent again, rather than the
 * registration failing with "was not uploaded".
 */
async function uploadAll(connection: ServerConnection, name: string, dir: string, manifest: Manifest, missingSha256: readonly string[], registered = false): Promise<void> {
  let missing = missingSha256;
  for (let round = 1; missing.length > 0; round++) {
    if (round > UPLOAD_ROUNDS) {
      throw new UserError(`uploading ${dir}: the server still lacks ${missing.length} of its files after ${UPLOAD_ROUNDS} uploads (is \`blobs gc\` removing them? give it a longer --min-age)`);
    }
    await uploadMissing(connection, dir, manifest, missing);
    try {
      ({ missing_sha256: missing } = await connection.unary<PushCheck>('ModelRegistry', 'CheckPush', { name, manifest_json: JSON.stringify(manifest) }));
    } catch (error) {
      // A registered artifact whose files are all stored again is refused as registered: restored.
      if (registered && (error as { cause?: { code?: number } }).cause?.code === GrpcStatus.ALREADY_EXISTS) return;
      throw error;
    }
  }
}

// ALREADY_EXISTS says "version X already exists" too: only "is already registered as" is the same artifact.
const isAlreadyRegistered = (error: unknown) =>
  error instanceof UserError && (error as UserError & { cause?: { code?: number } }).cause?.code === GrpcStatus.ALREADY_EXISTS && /is already registered as \S+$/.test(error.message);

/**
 * Uploads again the files the server lost of an artifact registered already (`registered_as`), and
 * says what it did: `NAME@VERSION is registered already (…); uploaded again …`. Null when it lacks
 * none; 'unregistered' when it is not registered: a parent is not registered after its child (it
 * would be the newer version).
 */
async function restoreRegistered(connection: ServerConnection, name: string, artifact: { dir: string; manifest: Manifest }): Promise<string | null | 'unregistered'> {
  let check: PushCheck;
  try {
    check = await connection.unary<PushCheck>('ModelRegistry', 'CheckPush', { name, manifest_json: JSON.stringify(artifact.manifest) });
  } catch (error) {
    if (isAlreadyRegistered(error)) return null;
    throw error;
  }
  if (!check.registered_as) return 'unregistered';
  await uploadAll(connection, name, artifact.dir, artifact.manifest, check.missing_sha256, true);
  return `${check.registered_as} is registered already (artifact ${artifactId(artifact.manifest)}, from ${artifact.dir}); ${restoredFiles(artifact.manifest, check.missing_sha256)}`;
}

/**
 * The refusal of a push whose pruned model is registered already while its parent in general/ is
 * not: said so, and why the push leaves it (registered after its child, the general model would be
 * the newer version, and `latest`).
 */
function parentLeftUnregistered(error: UserError, parentDir: string, sameModel: boolean): UserError {
  const why = sameModel ? 'registered now, it would be the newer version, and `latest` the general model' : 'registered after its child, its lineage would run backwards in time';
  return new UserError(`${error.message}; its parent in ${parentDir} is not registered, and this push leaves it so (${why}); \`fleetprune models push ${parentDir}\` registers it all the same`, { exitCode: error.exitCode, cause: error });
}

/**
 * `name@version` of a version of the same model registered before `version` (among the 100 before
 * it) that names it as its lineage parent: then `version`, the model it was pruned from, is
 * `latest` now. Undefined when there is none.
 */
async function registeredChild(connection: ServerConnection, version: GrpcVersion): Promise<string | undefined> {
  const before = await connection.unary<{ versions: GrpcVersion[] }>('ModelRegistry', 'ListVersions', { name: version.model, after_seq: Math.max(0, version.seq - 101), limit: 100 });
  const child = before.versions.find((other) => other.seq < version.seq && other.parent_artifact_id === version.artifact_id);
  return child ? `${child.model}@${child.version}` : undefined;
}

/** CheckPush's answer: the files to upload, and MODEL@VERSION when the artifact is registered already (see PushCheck on the server). */
interface PushCheck {
  missing_sha256: string[];
  registered_as: string;
}

/** "uploaded again N files the server had lost (PATHS)", of a registered artifact restored by a push. */
function restoredFiles(manifest: Manifest, missingSha256: readonly string[]): string {
  const paths = Object.entries(manifest.files)
    .filter(([, file]) => missingSha256.includes(file.sha256))
    .map(([path]) => path);
  return `uploaded again the ${paths.length === 1 ? 'file' : `${paths.length} files`} the server had lost (${paths.join(', ')})`;
}

/** Uploads the files of `manifest` the server said it lacks. */
async function uploadMissing(connection: ServerConnection, dir: string, manifest: Manifest, missingSha256: readonly string[]): Promise<void> {
  const missing = new Set(missingSha256);
  for (const [path, file] of Object.entries(manifest.files)) {
    if (!missing.has(file.sha256)) continue;
    try {
      await connection.upload('Blobs', 'UploadBlob', chunks(join(dir, path), file.sha256));
    } catch (error) {
      if (error instanceof UserError) throw new UserError(`uploading ${path}: ${error.message}`, { exitCode: error.exitCode, cause: error });
      throw error;
    }
    // Uploaded once: the pruned artifact and its parent may share a file.
    missing.delete(file.sha256);
  }
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

/** Whether a version's manifest lists a training record (so one not sent was lost on the way, not never written). */
function listsTrainingRecord(manifestJson: string): boolean {
  try {
    const files = (JSON.parse(manifestJson) as { files?: Record<string, unknown> }).files;
    return typeof files === 'object' && files !== null && Object.hasOwn(files, TRAINING_FILE);
  } catch {
    return false;
  }
}
