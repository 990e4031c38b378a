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
