import { UserError } from '../../shared/util/errors.ts';

/**
 * A refusal naming a gRPC request's field (`request.device_ids.1: must be …`) names the flag the
 * user gave instead (`--device (value 2): must be …`): they never wrote a field called device_ids.
 * A field within one (a label of --labels, `request.labels.KEY`; a selector's,
 * `request.selector_json.matchLabels.KEY`) is named after the flag (`--labels: KEY: …`).
 * `flagOf` maps the fields this command sends to its flags; other refusals are returned as they are.
 */
export function namingFlags(error: unknown, flagOf: Readonly<Record<string, string>>): unknown {
  if (!(error instanceof UserError)) return error;
  // The server joins several problems with '; ': each is named by its flag.
  let renamed = false;
  const parts = error.message.split('; ').map((part) => {
    const field = /^request\.([a-z_]+)(?:\.(\d+))?(?:\.([^:]+))?: /.exec(part);
    const flag = field && Object.hasOwn(flagOf, field[1]!) ? flagOf[field[1]!] : undefined;
    if (!field || flag === undefined) return part;
    renamed = true;
    const which = field[2] === undefined ? '' : ` (value ${Number(field[2]) + 1})`;
    // A selector's labels are what the user wrote as KEY=VALUE: its matchLabels is the server's word.
    const within = field[3] === undefined ? '' : `${field[3].replace(/^matchLabels\./, '')}: `;
    return `${flag}${which}: ${within}${part.slice(field[0].length)}`;
  });
  return renamed ? new UserError(parts.join('; '), { exitCode: error.exitCode, cause: error }) : error;
}
