import { UserError } from '../../shared/util/errors.ts';

/**
 * A refusal naming a gRPC request's field (`request.device_ids.1: must be …`) names the flag the
 * user gave instead (`--device (value 2): must be …`): they never wrote a field called device_ids.
 * `flagOf` maps the fields this command sends to its flags; other refusals are returned as they are.
 */
export function namingFlags(error: unknown, flagOf: Readonly<Record<string, string>>): unknown {
  if (!(error instanceof UserError)) return error;
  const field = /^request\.([a-z_]+)(?:\.(\d+))?: /.exec(error.message);
  const flag = field && Object.hasOwn(flagOf, field[1]!) ? flagOf[field[1]!] : undefined;
  if (!field || flag === undefined) return error;
  const which = field[2] === undefined ? '' : ` (value ${Number(field[2]) + 1})`;
  return new UserError(`${flag}${which}: ${error.message.slice(field[0].length)}`, { exitCode: error.exitCode, cause: error });
}
