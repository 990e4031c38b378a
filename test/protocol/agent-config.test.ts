import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AgentConfigSchema, loadAgentConfig, type AgentConfig } from '../../shared/protocol/agent-config.ts';
import { runCli, tempDir } from '../helpers/cli.ts';
import { makeFifo } from '../agent/fifo.ts';

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
  // Saved by Notepad as "UTF-8 with BOM": read, not refused as an invalid symbol at line 1.
  assert.deepEqual(await loadAgentConfig(await write('bom.json', `\uFEFF${JSON.stringify(config, null, 2)}`)), config);
  assert.deepEqual(AgentConfigSchema.parse(JSON.parse(JSON.stringify(config))), config);

  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const cases: [unknown, RegExp][] = [
    ['{not json', /not valid JSON/],
    [{ ...config, deviceId: 'a/b' }, /deviceId: must be/],
    [{ ...config, broker: { ...config.broker, url: 'http://x' } }, /broker\.url/],
    [{ ...config, server: { url: 'https://x' } }, /server\.token/],
    // Paths are appended to the server URL: a query, fragment or credentials made every download URL wrong.
    [{ ...config, server: { ...config.server, url: 'https://x/?site=a' } }, /server\.url: must be a base URL without a query/],
    [{ ...config, server: { ...config.server, url: 'https://x/#top' } }, /server\.url: must be a base URL/],
    [{ ...config, server: { ...config.server, url: 'https://user:pw@x' } }, /server\.url: must be a base URL/],
    [{ ...config, server: { ...config.server, url: 'http://x:0' } }, /server\.url: port 0 is no server's port/],
    [{ ...config, serverPublicKey: rsaKey }, /serverPublicKey: not an ed25519 key/],
    // OpenSSL reads the first of two keys and ignores the second: a config trusting "both" pinned only the first.
    [{ ...config, serverPublicKey: `${config.serverPublicKey}${generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' })}` }, /bad\.json: serverPublicKey: holds 2 PEM blocks, where one key belongs \(a device pins the one key of its server\)$/],
    [{ ...config, serverPublicKey: config.serverPublicKey.split('\n').slice(0, 2).join('\n') }, /bad\.json: serverPublicKey: is cut short: its PEM block has no -----END …----- line$/],
    // mqtt.js read port 0 as its default, 1883: the agent talked to another broker than the one named.
    [{ ...config, broker: { ...config.broker, url: 'mqtt://fleet.example:0' } }, /bad\.json: broker\.url: port 0 is no broker's port/],
    // Its credentials would replace the device's own (it could never log in), and the agent logs the URL.
    [{ ...config, broker: { ...config.broker, url: 'mqtt://u:brokerPW99@fleet.example:1883' } }, /bad\.json: broker\.url: must not hold user:password@ \(the device logs in with its own id and password/],
    [{ ...config, broker: { ...config.broker, url: 'mqtts://fleet.example:00' } }, /broker\.url: port 0/],
    // MQTT's CONNECT holds at most 65,535 bytes per credential: a longer one crashed the agent after start.
    [{ ...config, broker: { ...config.broker, password: 'p'.repeat(65_536) } }, /bad\.json: broker\.password: must be at most 65535 bytes of UTF-8 \(MQTT's limit\)$/],
    [{ ...config, broker: { ...config.broker, username: 'é'.repeat(32_768) } }, /bad\.json: broker\.username: must be at most 65535 bytes/],
    [{ ...config, broker: { ...config.broker, username: 'osaka\u000007' } }, /bad\.json: broker\.username: contains a NUL character \(U\+0000\)/],
    // The token goes in an Authorization header: one that cannot failed every download, and the error printed it.
    [{ ...config, server: { ...config.server, token: 'fp_secret\nrest' } }, /bad\.json: server\.token: holds a line feed \(U\+000A\) at position 10; tokens are visible ASCII/],
    [{ ...config, server: { ...config.server, token: 'fp_sécret' } }, /server\.token: holds a character \(U\+00E9\) at position 5/],
    [{ ...config, server: { ...config.server, token: 'fp secret' } }, /server\.token: holds a space/],
    [{ ...config, extra: 1 }, /bad\.json: the config: unrecognized key: "extra"$/i],
    [{ ...config, schema: 2 }, /bad\.json: schema: must be 1: the config format this agent reads \(a config from a newer server\? upgrade the agent\)$/],
    [JSON.stringify(config).replace('"labels":{', '"labels":{"__proto__":"x",'), /bad\.json: labels\.__proto__: "__proto__" is not allowed as a key$/],
    [JSON.stringify({ ...config, labels: { ...config.labels, constructor: 'x' } }), /bad\.json: labels\.constructor: label key "constructor" is reserved$/],
  ];
  for (const [content, message] of cases) {
    await assert.rejects(loadAgentConfig(await write('bad.json', content)), (error: Error) => {
      assert.equal(error.name, 'UserError');
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /\n/);
      assert.doesNotMatch(error.message, /secret/, 'no error quotes a credential');
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

test('an agent config that gives a key twice is refused on one line naming the file and the key (JSON.parse kept the last: a second deviceId made the agent another device)', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-config-dup-');
  const text = JSON.stringify(config);
  const cases: [string, string, string][] = [
    ['device.json', text.replace('"deviceId":"osaka-07"', '"deviceId":"osaka-07","deviceId":"kyoto-01"'), 'deviceId'],
    ['password.json', text.replace('"password":"secret"', '"password":"secret","password":"other"'), 'broker.password'],
    ['label.json', text.replace('"labels":{', '"labels":{"hw":"pi5",'), 'labels.hw'],
  ];
  assert.equal(JSON.parse(cases[0]![1]).deviceId, 'kyoto-01', 'JSON.parse alone takes the second deviceId');
  for (const [name, content, key] of cases) {
    const path = join(dir, name);
    await writeFile(path, content);
    await assert.rejects(loadAgentConfig(path), (error: Error) => {
      assert.equal(error.name, 'UserError');
      assert.equal(error.message, `${path}: "${key}" is given twice`);
      return true;
    });
  }
  // Nesting beyond the depth limit is refused as such, before the text is scanned for duplicates.
  const deep = join(dir, 'deep.json');
  await writeFile(deep, text.replace('"labels":{', `"labels":{"x":1,"x":${'['.repeat(100)}${']'.repeat(100)},`));
  await assert.rejects(loadAgentConfig(deep), /deep\.json: nested deeper than 64 levels$/);
  const ok = join(dir, 'ok.json');
  await writeFile(ok, JSON.stringify(config, null, 2));
  assert.deepEqual(await loadAgentConfig(ok), config);
});

test('fleetprune agent --config FIFO: exit 2 at once with one line naming the path (it blocked silently, waiting for a writer)', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-config-fifo-');
  const fifo = join(dir, 'agent.json');
  makeFifo(fifo);
  const result = await runCli(['agent', '--config', fifo, '--data-dir', join(dir, 'data')], {}, { timeoutMs: 15_000 });
  assert.equal(result.code, 2, `code ${result.code} (-1: killed after 15 s); stderr: ${result.stderr}`);
  assert.equal(result.stderr, `fleetprune: cannot read agent config ${fifo}: not a regular file\n`);
});

test('an agent config that cannot be read is named in plain words, not as ENOENT: …, open \'…\'', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-config-missing-');
  const missing = join(dir, 'nope.json');
  await writeFile(join(dir, 'file'), '');
  const result = await runCli(['agent', '--config', missing, '--data-dir', join(dir, 'data')], {}, { timeoutMs: 15_000 });
  assert.deepEqual([result.code, result.stderr], [2, `fleetprune: cannot read agent config ${missing}: no such file or directory\n`]);
  await assert.rejects(loadAgentConfig(join(dir, 'file', 'agent.json')), { name: 'UserError', message: `cannot read agent config ${join(dir, 'file', 'agent.json')}: a parent is not a directory` });
  await assert.rejects(loadAgentConfig(dir), { name: 'UserError', message: `cannot read agent config ${dir}: is a directory` });
});

test('an agent config that is not JSON is refused naming where, without quoting the text: it holds the device\'s secrets', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-config-json-');
  const password = 'hunter2-SECRET-0123456789';
  const text = JSON.stringify({ ...config, broker: { ...config.broker, password } }, null, 2);
  // Hand-edited: the quotes around the password lost. JSON.parse's message quotes the text around the error.
  const path = join(dir, 'agent.json');
  await writeFile(path, text.replace(`"${password}"`, password));
  await assert.rejects(loadAgentConfig(path), (error: Error) => {
    assert.equal(error.name, 'UserError');
    assert.doesNotMatch(error.message, /hunter2|SECRET|0123456789/);
    assert.match(error.message, /agent\.json: not valid JSON \(invalid symbol at line 11, column 17\)$/);
    return true;
  });
});

test('an agent config nested 200,000 levels deep is refused naming where, through the CLI (not an internal error)', async (t) => {
  const dir = await tempDir(t, 'fleetprune-agent-config-deep-');
  const cases: [string, string, RegExp][] = [
    // Unclosed: JSON.parse refuses it, and locating the problem must not recurse per level.
    ['open.json', '['.repeat(200_000), /: not valid JSON \(nested deeper than 64 levels at line 1, column 65\)\n$/],
    ['object.json', `{"a":${'{"a":'.repeat(199_999)}`, /: not valid JSON \(nested deeper than 64 levels at line 1, column 321\)\n$/],
    // Well-formed but too deep: refused after parsing, as before.
    ['closed.json', `${'['.repeat(200_000)}${']'.repeat(200_000)}`, /: nested deeper than 64 levels\n$/],
  ];
  for (const [name, text, expected] of cases) {
    const path = join(dir, name);
    await writeFile(path, text);
    const result = await runCli(['agent', '--config', path, '--data-dir', join(dir, 'data')]);
    assert.equal(result.code, 2, `${name}: exit code ${result.code}; stderr: ${result.stderr.slice(0, 500)}`);
    assert.match(result.stderr, expected, name);
    assert.doesNotMatch(result.stderr, /internal error|Maximum call stack|\n\s+at /, `${name}: no internal error or stack trace`);
  }
});
