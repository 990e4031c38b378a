import { execFile } from 'node:child_process';
import mqtt, { type MqttClient } from 'mqtt';

/** Connects with MQTT 3.1.1; resolves when connected, rejects with the broker's refusal. */
export function connectClient(url: string, options: { clientId: string; username: string; password: string; clean?: boolean }): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, clean: options.clean ?? true, clientId: options.clientId, username: options.username, password: options.password, reconnectPeriod: 0, connectTimeout: 5000 });
    client.once('connect', () => resolve(client));
    client.once('error', (error) => {
      client.end(true);
      reject(error);
    });
    client.once('close', () => reject(new Error('connection closed')));
  });
}

/** Collects the messages a client receives on `filter` during `ms`. */
export async function collectMessages(client: MqttClient, filter: string, ms: number): Promise<{ topic: string; payload: Buffer }[]> {
  const received: { topic: string; payload: Buffer }[] = [];
  const listener = (topic: string, payload: Buffer) => received.push({ topic, payload });
  client.on('message', listener);
  await Promise.race([client.subscribeAsync(filter, { qos: 1 }).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms))]);
  await new Promise((resolve) => setTimeout(resolve, ms));
  client.off('message', listener);
  return received;
}

export interface PubResult {
  code: number;
  stderr: string;
}

/** Runs a real `mosquitto_pub` process (payload from -m, -f or stdin via -s). */
export function mosquittoPub(url: string, auth: { username: string; password: string; clientId?: string }, topic: string, payload: { message?: string; file?: string }): Promise<PubResult> {
  const { hostname, port } = new URL(url);
  const args = ['-h', hostname, '-p', port, '-V', 'mqttv311', '-q', '1', '-u', auth.username, '-P', auth.password, '-t', topic];
  if (auth.clientId) args.push('-i', auth.clientId);
  if (payload.file) args.push('-f', payload.file);
  else args.push('-m', payload.message ?? '');
  return new Promise((resolve) => {
    execFile('mosquitto_pub', args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stderr });
    });
  });
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
