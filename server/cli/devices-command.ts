import { lstat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { UserError, errorMessage } from '../../shared/util/errors.ts';
import { writeStdoutOrSay } from '../../shared/cli/run-cli.ts';
import { assertWritableFile } from '../../shared/util/fs-checks.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags, type ServerConnection } from './grpc-client.ts';
import { labelPairText, parseLabelPairs } from './label-pairs.ts';
import { formatTable } from './format-table.ts';
import { deviceJson, type GrpcDevice } from './json-views.ts';
import { checkSelector, DEVICE_STATES, deviceState, matchesDeviceFilter, parseActiveModel, parseDeviceState, type DeviceFilter, type DeviceState } from './device-filter.ts';
import { describeDevice, type GrpcDeviceRefusal } from './device-details.ts';
import { refuseEmpty } from './non-empty.ts';
import { namingFlags } from './request-field-flags.ts';

export function registerDevicesCommand(program: Command): void {
  const devices = program.command('devices').description('the device fleet: enroll, list, revoke (over gRPC)');

  withConnectionOptions(devices.command('enroll').description('enroll a device and write its agent config file (contains its secrets; mode 0600)'))
    .requiredOption('--id <device>', 'device id (1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit)')
    .option('--labels <k=v,...>', 'device labels, e.g. site=osaka,hw=pi4 (a comma within a value: \\,; values are trimmed)', parseLabelPairs, {})
    .requiredOption('--out <file>', 'where to write the agent config (refuses to overwrite); - for stdout (to pipe it to the device, e.g. over ssh)')
    .option('--broker-url <url>', 'broker URL for the agent (default: the server\'s public broker URL)')
    .option('--server-url <url>', 'server URL for the agent (default: the server\'s public URL)')
    .action(async (flags: ConnectionFlags & { id: string; labels: Record<string, string>; out: string; brokerUrl?: string; serverUrl?: string }) => {
      refuseEmpty(flags.brokerUrl, '--broker-url', "the server's public broker URL");
      refuseEmpty(flags.serverUrl, '--server-url', "the server's public URL");
      // `-` is stdout, as for most tools' --out: a file named "-" in the working directory is what nobody means.
      const toStdout = flags.out === '-';
      const out = resolve(flags.out);
      if (!toStdout) await checkWritableTarget(out);
      await withConnection(flags, async (connection) => {
        const { agent_config_json: config, broker_warning: warning } = await connection
          .unary<{ agent_config_json: string; broker_warning: string }>('Devices', 'EnrollDevice', {
            id: flags.id,
            labels: flags.labels,
            broker_url: flags.brokerUrl ?? '',
            server_url: flags.serverUrl ?? '',
          })
          .catch((error: unknown) => {
            throw namingFlags(error, { id: '--id', labels: '--labels', broker_url: '--broker-url', server_url: '--server-url' });
          });
        if (toStdout) {
          await writeStdoutOrSay(`${config}\n`, `device ${flags.id} is enrolled but its agent config (with secrets) did not reach it; revoke ${flags.id} and enroll the device under a new id (ids are never reused)`);
          process.stderr.write(`enrolled ${flags.id}; its agent config (with secrets) is on stdout\n`);
          if (warning) throw new UserError(`warning: ${warning}`, { exitCode: 3 });
          return;
        }
        try {
          await writeFile(out, `${config}\n`, { mode: 0o600, flag: 'wx' });
        } catch (error) {
          throw new UserError(
            `--out: the device is enrolled but ${out} could not be written (${errorMessage(error)}); revoke ${flags.id} and enroll the device under a new id (ids are never reused)`,
            { exitCode: 1 },
          );
        }
        process.stderr.write(`enrolled ${flags.id}; its agent config (with secrets) is in ${out}\n`);
        // The enrollment stands and its config is written; the broker's part is late: said on stderr, and the exit code says it (3).
        if (warning) throw new UserError(`warning: ${warning}`, { exitCode: 3 });
      });
    });

  withConnectionOptions(devices.command('list').description('devices: online, last seen, active and candidate versions, labels'))
    .option('--selector <k=v,...>', 'only devices whose labels match all pairs, as a rollout selects them (a comma within a value: \\,)', parseLabelPairs)
    .option('--state <state>', `only devices in this state: ${DEVICE_STATES.join(', ')}`, parseDeviceState)
    .option('--active <model[@version]>', 'only devices running this model (or this version of it: a number or an alias) as their active model', parseActiveModel)
    .option('--json', 'print the devices as JSON (as GET /api/devices shows them, without heartbeats)')
    .action(async (flags: ConnectionFlags & { json?: boolean; selector?: Record<string, string>; state?: DeviceState; active?: { model: string; version?: string } }) => {
      if (flags.selector) checkSelector(flags.selector);
      await withConnection(flags, async (connection) => {
        // Before the paging: a mistyped --active is refused at once, not after the whole fleet.
        const active = flags.active ? await resolveActive(connection, flags.active) : undefined;
        // Page by page: one response for a large fleet would pass gRPC's 4 MiB message limit.
        const all: GrpcDevice[] = [];
        let after = '';
        let broker = '';
        do {
          const page = await connection.unary<{ devices: GrpcDevice[]; next: string; broker: string }>('Devices', 'ListDevices', { limit: 1000, after });
          all.push(...page.devices);
          after = page.next;
          broker = page.broker;
        } while (after);
        const filter: DeviceFilter = { ...(flags.selector ? { selector: flags.selector } : {}), ...(flags.state ? { state: flags.state } : {}), ...(active ? { active } : {}) };
        const filtered = Object.keys(filter).length > 0;
        const listed = filtered ? all.filter((device) => matchesDeviceFilter(device, filter)) : all;
        // A hung broker leaves every device `online` as it was: said, rather than shown as live.
        if (broker === 'disconnected') {
          process.stderr.write('fleetprune: warning: the server is not connected to the broker now; each device\'s state is as it was when the connection went\n');
        }
        if (flags.json) return void process.stdout.write(`${JSON.stringify(listed.map(deviceJson), null, 2)}\n`);
        // stdout holds the table alone (for scripts); the note goes to stderr, as rollout list's does.
        if (listed.length === 0) return void process.stderr.write(filtered ? `no devices match (of ${all.length})\n` : 'no devices\n');
        const rows = listed.map((device) => [
          device.id,
          deviceState(device),
          device.last_seen || '-',
          device.active ? `${device.active.model}@${device.active.version}` : '-',
          device.candidate ? `${device.candidate.model}@${device.candidate.version}` : '-',
          // formatTable escapes it: label values may hold newlines or escape sequences (enrolled by a server from before they were refused).
          Object.entries(device.labels).map(([key, value]) => labelPairText(key, value)).join(',') || '-',
        ]);
        process.stdout.write(formatTable([['DEVICE', 'STATE', 'LAST SEEN', 'ACTIVE', 'CANDIDATE', 'LABELS'], ...rows]));
        if (filtered) process.stderr.write(`${listed.length} of ${all.length} devices match\n`);
      });
    });

  withConnectionOptions(devices.command('show <device>').description('one device: state, labels, its models, the assignment retained for it, and its latest refused answer'))
    .option('--json', 'print the device as JSON (as GET /api/devices/:id shows it, without its heartbeat)')
    .action(async (id: string, flags: ConnectionFlags & { json?: boolean }) => {
      await withConnection(flags, async (connection) => {
        const { device, last_refusal: refusal } = await connection
          .unary<{ device: GrpcDevice; last_refusal?: GrpcDeviceRefusal | null }>('Devices', 'GetDevice', { id })
          .catch((error: unknown) => {
            throw namingFlags(error, { id: '<device>' });
          });
        const lastRefusal = refusal
          ? { assignmentId: refusal.assignment_id, outcome: refusal.outcome, role: refusal.role, model: refusal.model, version: refusal.version, reason: refusal.reason || null, failedRole: refusal.failed_role || null, at: refusal.at }
          : null;
        if (flags.json) return void process.stdout.write(`${JSON.stringify({ ...deviceJson(device), lastRefusal }, null, 2)}\n`);
        process.stdout.write(describeDevice(device, lastRefusal));
      });
    });

  withConnectionOptions(devices.command('revoke <device>').description('revoke a device: the broker refuses it and its download token stops working')).action(
    async (id: string, flags: ConnectionFlags) => {
      await withConnection(flags, async (connection) => {
        const { broker_warning: warning } = await connection.unary<{ broker_warning: string }>('Devices', 'RevokeDevice', { id });
        process.stdout.write(`revoked ${id}\n`);
        // The revocation stands; the broker's part is late: said on stderr, and the exit code says it (3).
        if (warning) throw new UserError(`warning: ${warning}`, { exitCode: 3 });
      });
    },
  );
}

/** Fails before enrolling when the config file could not be written afterwards. */
async function checkWritableTarget(path: string): Promise<void> {
  // lstat: a dangling symlink is there too (the write, which never follows one, fails on it).
  if (await lstat(path).then(() => true, () => false)) throw new UserError(`--out: ${path} already exists (it may hold another device's credentials)`);
  // A real probe (created and removed): access() passes for paths that take no files (/proc).
  await assertWritableFile(path, '--out');
}


/**
 * `--active`'s model and version as the registry names them: an alias (iris@production) is the
 * version it points to, and a model or version the registry does not hold is refused, as assign
 * refuses it, rather than matching no device without a word.
 */
async function resolveActive(connection: ServerConnection, active: { model: string; version?: string }): Promise<{ model: string; version?: string }> {
  const named = (error: unknown) => {
    throw namingFlags(error, { name: '--active', ref: '--active' });
  };
  if (active.version === undefined) {
    await connection.unary('ModelRegistry', 'GetModel', { name: active.model }).catch(named);
    return active;
  }
  const found = await connection.unary<{ version: string }>('ModelRegistry', 'GetVersion', { name: active.model, ref: active.version }).catch(named);
  return { model: active.model, version: found.version };
}
