// A real server process whose rollouts drive an in-memory fleet (the test-only start option).
// FP_TEST_CONFIG: the server config (JSON); FP_TEST_JOURNAL: a file where the simulated devices
// journal every command call and every applied command, so they survive kill -9 like real
// devices and a replayed command stays a no-op.
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { parseServerConfig } from '../../../server/config/server-config.ts';
import { startServer } from '../../../server/app/start-server.ts';
import { createLogger } from '../../../shared/util/log.ts';
import type { AssignCommand, RevertCommand } from '../../../server/rollout/fleet-port.ts';
import { InMemoryFleet } from '../../rollout/in-memory-fleet.ts';
import { testDevices } from './rollout-fixtures.ts';

class JournaledFleet extends InMemoryFleet {
  constructor(private readonly journal: string) {
    super(testDevices(4));
    if (!existsSync(journal)) return;
    for (const line of readFileSync(journal, 'utf8').split('\n').filter(Boolean)) {
      const entry = JSON.parse(line) as { applied?: string; device?: string; effect?: string };
      if (entry.applied) this.applied.add(entry.applied);
      if (entry.device && entry.effect) this.devices.get(entry.device)?.effects.push(entry.effect);
    }
  }

  override async assign(command: AssignCommand) {
    return this.#journaled(command.commandId, () => super.assign(command));
  }

  override async revert(command: RevertCommand) {
    return this.#journaled(command.commandId, () => super.revert(command));
  }

  async #journaled<T>(commandId: string, work: () => Promise<T>): Promise<T> {
    const before = new Map([...this.devices.values()].map((d) => [d.id, d.effects.length]));
    const result = await work();
    const lines = [JSON.stringify({ call: commandId })];
    for (const device of this.devices.values()) {
      for (const effect of device.effects.slice(before.get(device.id))) lines.push(JSON.stringify({ applied: `${commandId}/${device.id}`, device: device.id, effect }));
    }
    appendFileSync(this.journal, `${lines.join('\n')}\n`);
    return result;
  }
}

// FP_TEST_START_ON_STDIN: load everything, say `ready`, and start only when a line arrives on
// stdin. A test prepares a restart this way while the server it replaces still runs, so that the
// restart after a kill -9 costs the server's start only, not Node's and tsx's (seconds when loaded).
if (process.env.FP_TEST_START_ON_STDIN) {
  process.stdout.write('ready\n');
  const start = await new Promise<boolean>((resolve) => {
    process.stdin.once('data', () => resolve(true));
    process.stdin.once('end', () => resolve(false)); // the test went away without starting it
  });
  process.stdin.removeAllListeners('data').removeAllListeners('end').pause();
  if (!start) process.exit(0);
}

const config = parseServerConfig(JSON.parse(process.env.FP_TEST_CONFIG!));
const fleet = new JournaledFleet(process.env.FP_TEST_JOURNAL!);
const server = await startServer(config, { log: createLogger('fleet-test-server', 'warn'), testOnlyRolloutFleet: { fleet } });
process.stdout.write(`${server.line}\n`);
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
