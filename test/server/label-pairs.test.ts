import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { registerAssignCommand } from '../../server/cli/assign-command.ts';
import { registerDevicesCommand } from '../../server/cli/devices-command.ts';
import { parseLabelPairs } from '../../server/cli/label-pairs.ts';

/** The option values the real command parsed from `argv`, without running its action. */
function parsedOptions(register: (program: Command) => void, argv: string[]): Record<string, unknown> {
  const program = new Command().exitOverride();
  register(program);
  let options: Record<string, unknown> = {};
  const leaf = (command: Command): Command[] => (command.commands.length ? command.commands.flatMap(leaf) : [command]);
  for (const command of leaf(program)) {
    command.exitOverride().configureOutput({ writeErr: () => {} });
    command.action(function (this: Command) {
      options = this.opts();
    });
  }
  program.parse(argv, { from: 'user' });
  return options;
}

test('a repeated --selector or --labels adds its pairs to the earlier ones, never replaces them', () => {
  const assign = parsedOptions(registerAssignCommand, ['assign', '--model', 'iris', '--version', '1', '--role', 'candidate', '--selector', 'site=osaka', '--selector', 'hw=pi4']);
  assert.deepEqual(assign.selector, { site: 'osaka', hw: 'pi4' });
  const enroll = parsedOptions(registerDevicesCommand, ['devices', 'enroll', '--id', 'd1', '--out', 'agent.json', '--labels', 'site=a', '--labels', 'hw=pi4,tier=edge']);
  assert.deepEqual(enroll.labels, { site: 'a', hw: 'pi4', tier: 'edge' });
  // The same key in two flags is as ambiguous as twice in one.
  assert.throws(() => parsedOptions(registerAssignCommand, ['assign', '--model', 'iris', '--version', '1', '--role', 'active', '--selector', 'site=a', '--selector', 'site=b']), (error: unknown) => error instanceof CommanderError && /label site is given twice/.test(error.message));
  assert.deepEqual(parseLabelPairs('a=1'), { a: '1' });
  // A value with a control character is refused before the server is asked (it refuses it too).
  assert.throws(
    () => parsedOptions(registerDevicesCommand, ['devices', 'enroll', '--id', 'd1', '--out', 'agent.json', '--labels', 'site=osaka\u001b[2J']),
    (error: unknown) => error instanceof CommanderError && error.message.endsWith('label site: the value must not contain control characters such as newlines or escape sequences (found U+001B at character 6)'),
  );
});

// A label value holding a comma (enrolled over REST) could not be selected from the CLI, and
// `devices list` showed it as two labels; a value padded with spaces could not be either (the CLI
// trims values), so the server no longer enrolls one.
test('a comma within a label value is written \\, in --labels and --selector, and shown so by devices list; the server refuses a value padded with spaces', async () => {
  assert.deepEqual(parseLabelPairs('place=Osaka\\, Japan,hw=pi4'), { place: 'Osaka, Japan', hw: 'pi4' });
  // Any other backslash is itself, as before (a UNC path given to --selector selects what it did).
  assert.deepEqual(parseLabelPairs('share=\\\\srv\\x,b=y'), { share: '\\\\srv\\x', b: 'y' });
  const { labelPairText } = await import('../../server/cli/label-pairs.ts');
  const labels = { place: 'Osaka, Japan', path: 'C:\\dir', plain: 'pi4' };
  const shown = Object.entries(labels).map(([key, value]) => labelPairText(key, value)).join(',');
  assert.equal(shown, 'place=Osaka\\, Japan,path=C:\\dir,plain=pi4');
  assert.deepEqual(parseLabelPairs(shown), labels, 'what devices list shows selects the device');
  // A value ending in a backslash, or with one before a comma, comes back as it was too.
  const edges = { root: 'C:\\', odd: 'a\\,b', plain: 'pi4' };
  const edgesShown = Object.entries(edges).map(([key, value]) => labelPairText(key, value)).join(',');
  assert.equal(edgesShown, 'root=C:\\\\,odd=a\\\\\\,b,plain=pi4');
  assert.deepEqual(parseLabelPairs(edgesShown), edges);
  const { deviceLabelsProblem } = await import('../../server/fleet/device-labels.ts');
  assert.equal(deviceLabelsProblem({ site: ' north ' }), 'labels.site: must not begin or end with spaces (a selector given on the command line could never name it)');
  assert.equal(deviceLabelsProblem({ place: 'Osaka, Japan' }), null);
});

// A label key that is a number was read as a list's index ("--labels (value 8)"); one with a colon
// was left as the request field's path.
test('a refusal of a label is named by its flag and key, whatever the key; a list item by its place', async () => {
  const { namingFlags } = await import('../../server/cli/request-field-flags.ts');
  const { UserError } = await import('../../shared/util/errors.ts');
  const named = (message: string) => (namingFlags(new UserError(message), { labels: '--labels', device_ids: '--device', selector_json: '--selector' }) as Error).message;
  assert.equal(named('request.labels.7: must be at most 256 characters long'), '--labels: 7: must be at most 256 characters long');
  assert.equal(named('request.labels.a:b: label keys are 1-64 characters'), '--labels: a:b: label keys are 1-64 characters');
  assert.equal(named('request.selector_json.matchLabels.example.com/tier: label keys are 1-64 characters'), '--selector: example.com/tier: label keys are 1-64 characters');
  assert.equal(named('request.device_ids.1: must be a device id'), '--device (value 2): must be a device id');
  assert.equal(named('request.labels: at most 64 labels per device (got 65)'), '--labels: at most 64 labels per device (got 65)');
  // As this server names them, without an older server's `request.`; a refusal of a field the command did not send is left alone.
  assert.equal(named('labels.7: must be at most 256 characters long'), '--labels: 7: must be at most 256 characters long');
  assert.equal(named('device_ids.1: must be a device id; labels: at most 64 labels per device (got 65)'), '--device (value 2): must be a device id; --labels: at most 64 labels per device (got 65)');
  assert.equal(named('broker_url: must name the broker\'s host'), "broker_url: must name the broker's host");
});
