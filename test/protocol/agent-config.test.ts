import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AgentConfigSchema, loadAgentConfig, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import { runCli } from '../helpers/cli.ts';

const config: AgentConfig = {
  schema: 1,
  deviceId: 'osaka-07',
  labels: { site: 'osaka', hw: 'pi4' },
  broker: { url: 'mqtt://fleet.example:1883', username: 'osaka-07', password: 'secret' },
  server: { url: 'https://fleet.example', token: 'token' },
  serverPublicKey: generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString(),
};

test('agent config files: valid ones load, invalid ones are one-line errors naming the field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const write = async (name: string, content: unknown) => {
    const path = join(dir, name);
    await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };
  assert.deepEqual(await loadAgentConfig(await write('ok.json', config)), config);
  assert.deepEqual(AgentConfigSchema.parse(JSON.parse(JSON.stringify(config))), config);

  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const cases: [unknown, RegExp][] = [
    ['{not json', /not valid JSON/],
    [{ ...config, deviceId: 'a/b' }, /deviceId: must be/],
    [{ ...config, broker: { ...config.broker, url: 'http://x' } }, /broker\.url/],
    [{ ...config, server: { url: 'https://x' } }, /server\.token/],
    [{ ...config, serverPublicKey: rsaKey }, /serverPublicKey: not an ed25519 key/],
    [{ ...config, extra: 1 }, /unrecognized key/i],
    [JSON.stringify(config).replace('"labels":{', '"labels":{"__proto__":"x",'), /bad\.json: labels\.__proto__: "__proto__" is not allowed as a key$/],
    [JSON.stringify({ ...config, labels: { ...config.labels, constructor: 'x' } }), /bad\.json: labels\.constructor: label key "constructor" is reserved$/],
  ];
  for (const [content, message] of cases) {
    await assert.rejects(loadAgentConfig(await write('bad.json', content)), (error: Error) => {
      assert.equal(error.name, 'UserError');
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /\n/);
      return true;
    });
  }
});

test('fleetprune agent: a bad config or flag is one line on stderr and exit code 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fleetprune-agent-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'agent.json');
  await writeFile(path, JSON.stringify({ ...config, labels: 'nope' }));
  const bad = await runCli(['agent', '--config', path, '--data-dir', join(dir, 'data')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^fleetprune: .*agent\.json: labels: /);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  const holdout = await runCli(['agent', '--config', path, '--data-dir', join(dir, 'data'), '--holdout', 'x.csv']);
  assert.equal(holdout.code, 2);
  assert.match(holdout.stderr, /--holdout needs --label/);
});
