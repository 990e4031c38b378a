import { UserError } from '../../shared/util/errors.ts';

/**
 * A refusal naming a gRPC request's field (`device_ids.1: must be …`) names the flag the
 * user gave instead (`--device (value 2): must be …`): they never wrote a field called device_ids.
 * A field within one (a label of --labels, `labels.KEY`; a selector's,
 * `selector_json.matchLabels.KEY`) is named after the flag (`--labels: KEY: …`).
 * `flagOf` maps the fields this command sends to its flags; other refusals are returned as they are.
 */
/** The request fields that are lists (their items named by place); the others are values or maps. */
const LIST_FIELDS = new Set(['device_ids']);

export function namingFlags(error: unknown, flagOf: Readonly<Record<string, string>>): unknown {
  if (!(error instanceof UserError)) return error;
  // The server joins several problems with '; ': each is named by its flag.
  let renamed = false;
  const parts = error.message.split('; ').map((part) => {
    // The path up to the first ': ' (a label key may hold a colon, or be a number).
    // An older server named the field after `request.`.
    const field = /^(?:request\.)?([a-z_]+)(?:\.(.+?))?: /.exec(part);
    const flag = field && Object.hasOwn(flagOf, field[1]!) ? flagOf[field[1]!] : undefined;
    if (!field || flag === undefined) return part;
    renamed = true;
    const rest = field[2];
    // A list's item by its place (`--device (value 2)`); a map's entry by its key (`--labels: KEY`).
    const which = rest !== undefined && LIST_FIELDS.has(field[1]!) && /^\d+$/.test(rest) ? ` (value ${Number(rest) + 1})` : '';
    // A selector's labels are what the user wrote as KEY=VALUE: its matchLabels is the server's word.
    const within = rest === undefined || which !== '' ? '' : `${rest.replace(/^matchLabels\./, '')}: `;
    return `${flag}${which}: ${within}${part.slice(field[0].length)}`;
  });
  return renamed ? new UserError(parts.join('; '), { exitCode: error.exitCode, cause: error }) : error;
}
