import type { Command } from 'commander';
import { UserError } from '../../shared/util/errors.ts';
import { parseChoice } from '../../shared/cli/option-parsers.ts';
import { ROLES } from '../../shared/protocol/payloads.ts';
import { withConnection, withConnectionOptions, type ConnectionFlags } from './grpc-client.ts';
import { namingFlags } from './request-field-flags.ts';
import { parseLabelPairs } from './label-pairs.ts';

interface AssignFlags extends ConnectionFlags {
  model: string;
  version: string;
  role: string;
  selector?: Record<string, string>;
  device?: string[];
  allDevices?: boolean;
}

export function registerAssignCommand(program: Command): void {
  withConnectionOptions(program.command('assign').description('publish a model version to devices as their candidate or active model'))
    .requiredOption('--model <name>', 'model name')
    .requiredOption('--version <version>', 'a version, an alias (candidate, production) or latest')
    .requiredOption('--role <role>', 'candidate (install and benchmark next to the active model) or active (serve it)', parseChoice(ROLES))
    .option('--selector <k=v,...>', 'every device whose labels match all pairs, e.g. site=osaka (a comma within a value: \\,)', parseLabelPairs)
    .option('--device <ids>', 'these devices (comma-separated ids, repeatable) instead of --selector', (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((id) => id.trim())])
    .option('--all-devices', 'every live device of the fleet, instead of --selector or --device')
    .action(async (flags: AssignFlags) => {
      if ([flags.selector, flags.device, flags.allDevices].filter((given) => given !== undefined).length !== 1) {
        throw new UserError('give exactly one of --selector, --device and --all-devices');
      }
      // `--selector "$SITE"` with SITE unset would otherwise match every device of the fleet.
      if (flags.selector && Object.keys(flags.selector).length === 0) throw new UserError('--selector: no key=value pairs given (an empty selector would match every device)');
      // `--device "$IDS"` with IDS unset would otherwise reach the server as neither, and be refused as a missing --selector.
      if (flags.device !== undefined && flags.device.every((id) => id === '')) throw new UserError('--device: no device ids given');
      await withConnection(flags, async (connection) => {
        const result = await connection
          .unary<{ assignment_id: string; model: string; version: string; role: string; devices: { device_id: string; online: boolean }[]; warnings?: string[] }>('Assignments', 'CreateAssignment', {
            model: flags.model,
            version: flags.version,
            role: flags.role,
            selector_json: flags.selector ? JSON.stringify({ matchLabels: flags.selector }) : '',
            device_ids: flags.device ?? [],
            all_devices: flags.allDevices === true,
          })
          .catch((error: unknown) => {
            throw namingFlags(error, { model: '--model', version: '--version', role: '--role', device_ids: '--device', selector_json: '--selector' });
          });
        for (const warning of result.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
        process.stdout.write(`assignment ${result.assignment_id}: ${result.model}@${result.version} as ${result.role} to ${result.devices.length} device(s)\n`);
        for (const device of result.devices) process.stdout.write(`  ${device.device_id}\t${device.online ? 'online' : 'offline (retained until it connects)'}\n`);
      });
    });
}
