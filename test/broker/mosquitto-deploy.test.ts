import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { renderMosquittoConf } from '../../server/broker/mosquitto-auth-files.ts';

test('deploy/mosquitto/mosquitto.conf is the generated configuration (auth on, ACL file, no anonymous access)', async () => {
  const shipped = await readFile(new URL('../../deploy/mosquitto/mosquitto.conf', import.meta.url), 'utf8');
  assert.equal(shipped, renderMosquittoConf({ port: 1883, host: '0.0.0.0', authDir: '/etc/mosquitto/fleetprune', persistenceDir: '/var/lib/mosquitto' }));
  assert.match(shipped, /^allow_anonymous false$/m);
  assert.match(shipped, /^acl_file /m);
  assert.match(shipped, /^password_file /m);
});
