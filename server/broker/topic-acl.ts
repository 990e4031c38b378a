import { FLEET_COMMANDS_TOPIC, TOPIC_ROOT, assignmentTopic, reportsTopic, statusTopic, telemetryTopic } from '../../shared/protocol/topics.ts';

/**
 * The fleet's topic ACL, in one place for both brokers: a device publishes only its own status,
 * reports and telemetry, and reads only its own assignment and the fleet commands (exact
 * topics, no wildcards). The server identity may publish and subscribe to anything under the root.
 */
export function devicePublishTopics(deviceId: string): string[] {
  return [statusTopic(deviceId), reportsTopic(deviceId), telemetryTopic(deviceId)];
}

export function deviceReadTopics(deviceId: string): string[] {
  return [assignmentTopic(deviceId), FLEET_COMMANDS_TOPIC];
}

export function deviceMayPublish(deviceId: string, topic: string): boolean {
  return devicePublishTopics(deviceId).includes(topic);
}

export function deviceMaySubscribe(deviceId: string, filter: string): boolean {
  return deviceReadTopics(deviceId).includes(filter);
}

export const SERVER_TOPIC_PATTERN = `${TOPIC_ROOT}/#`;
