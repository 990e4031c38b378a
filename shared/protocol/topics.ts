/**
 * The fleet protocol's topic layout (MQTT 3.1.1). Every topic lives under `fleetprune/v1/`; a
 * breaking change to the layout or to a payload's meaning moves to `fleetprune/v2/`.
 */
export const TOPIC_ROOT = 'fleetprune/v1';

/** Device ids are topic segments and MQTT client ids, so they exclude `/`, `+`, `#` and spaces. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id);
}

/** Per-device topics: `fleetprune/v1/devices/{deviceId}/{kind}`. */
export const DEVICE_TOPIC_KINDS = ['assignment', 'status', 'reports', 'telemetry'] as const;
export type DeviceTopicKind = (typeof DEVICE_TOPIC_KINDS)[number];
export type TopicKind = DeviceTopicKind | 'commands';

export const FLEET_COMMANDS_TOPIC = `${TOPIC_ROOT}/fleet/commands`;

export function deviceTopic(deviceId: string, kind: DeviceTopicKind): string {
  if (!isValidDeviceId(deviceId)) throw new Error(`invalid device id ${JSON.stringify(deviceId)}`);
  return `${TOPIC_ROOT}/devices/${deviceId}/${kind}`;
}

export const assignmentTopic = (deviceId: string) => deviceTopic(deviceId, 'assignment');
export const statusTopic = (deviceId: string) => deviceTopic(deviceId, 'status');
export const reportsTopic = (deviceId: string) => deviceTopic(deviceId, 'reports');
export const telemetryTopic = (deviceId: string) => deviceTopic(deviceId, 'telemetry');

/** Subscription filters the server uses to hear from every device. */
export const ALL_DEVICES_FILTER = (kind: DeviceTopicKind) => `${TOPIC_ROOT}/devices/+/${kind}`;

export type ParsedTopic = { kind: DeviceTopicKind; deviceId: string } | { kind: 'commands'; deviceId?: undefined };

/** Splits a concrete topic into its kind and device id; undefined for anything outside the layout. */
export function parseTopic(topic: string): ParsedTopic | undefined {
  if (topic === FLEET_COMMANDS_TOPIC) return { kind: 'commands' };
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== TOPIC_ROOT || parts[2] !== 'devices') return undefined;
  const deviceId = parts[3]!;
  const kind = parts[4] as DeviceTopicKind;
  if (!isValidDeviceId(deviceId) || !DEVICE_TOPIC_KINDS.includes(kind)) return undefined;
  return { kind, deviceId };
}

export type QoS = 0 | 1 | 2;

/** Delivery rules per topic kind; publishers use these, docs/protocol.md lists them. */
export const TOPIC_DELIVERY: Record<TopicKind, { qos: QoS; retain: boolean; direction: 'server→device' | 'device→server' }> = {
  assignment: { qos: 1, retain: true, direction: 'server→device' },
  status: { qos: 1, retain: true, direction: 'device→server' },
  reports: { qos: 1, retain: false, direction: 'device→server' },
  telemetry: { qos: 1, retain: false, direction: 'device→server' },
  commands: { qos: 1, retain: false, direction: 'server→device' },
};
