import type { TestContext } from 'node:test';
import { ExternalBroker } from '../../server/broker/external-broker.ts';
import { writeMosquittoAuthFiles } from '../../server/broker/mosquitto-auth-files.ts';
import { engineMissing } from '../helpers/engines.ts';
import { startEmbeddedHarness, startFleetHarness, testLogger, type FleetHarness } from '../helpers/fleet-harness.ts';
import { MosquittoProcess, mosquittoBinary } from '../helpers/mosquitto.ts';

export const BROKER_KINDS = ['embedded', 'mosquitto'] as const;
export type BrokerKind = (typeof BROKER_KINDS)[number];

/** A fleet harness on the embedded aedes broker or on a private Mosquitto process; undefined when skipped. */
export async function harnessFor(t: TestContext, kind: BrokerKind): Promise<FleetHarness | undefined> {
  if (kind === 'embedded') {
    const harness = await startEmbeddedHarness();
    t.after(() => harness.stop());
    return harness;
  }
  const binary = mosquittoBinary();
  if (!binary) {
    engineMissing(t, 'mosquitto', 'the mosquitto binary is not on PATH (apt-get install mosquitto)');
    return undefined;
  }
  const mosquitto = await MosquittoProcess.create(binary);
  let harness: FleetHarness | undefined;
  t.after(async () => {
    await harness?.stop();
    await mosquitto.stop();
  });
  harness = await startFleetHarness(async (credentials, server) => {
    await writeMosquittoAuthFiles(mosquitto.authDir, server, credentials);
    await mosquitto.start();
    return new ExternalBroker({ url: mosquitto.url, server, credentials, logger: testLogger, mosquittoAuth: { dir: mosquitto.authDir, reload: () => mosquitto.reload() } });
  });
  return harness;
}
