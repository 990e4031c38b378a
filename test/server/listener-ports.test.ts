import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseServerConfig } from '../../server/config/server-config.ts';

test('one port given to two listeners is refused naming both flags (it failed the second listener with a bare EADDRINUSE); 0 (ephemeral) may repeat', () => {
  assert.throws(() => parseServerConfig({ dataDir: '/tmp/x', httpPort: '18500', grpcPort: '18500' }), { message: "--grpc-port: 18500 is also --http-port's port; each listener needs its own" });
  assert.throws(() => parseServerConfig({ dataDir: '/tmp/x', grpcPort: '1883' }), { message: "--mqtt-port: 1883 is also --grpc-port's port; each listener needs its own" });
  assert.equal(parseServerConfig({ dataDir: '/tmp/x', httpPort: '0', grpcPort: '0', mqttPort: '0' }).grpcPort, 0);
  // With an external broker, --mqtt-port is not a listener of this server.
  assert.equal(parseServerConfig({ dataDir: '/tmp/x', httpPort: '1883', mqttUrl: 'mqtt://127.0.0.1:1883', mqttPassword: 'a-long-password' }).httpPort, 1883);
});
