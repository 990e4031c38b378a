/** The largest payload any fleet topic accepts; larger messages are dropped as `too-large`. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/**
 * The largest MQTT packet the brokers accept at all (embedded: PacketSizeGuard, at the header; Mosquitto:
 * max_packet_size). Between the two limits a message reaches its reader and is dropped there,
 * with a counted reason; above this one the broker refuses it.
 */
export const BROKER_MAX_PACKET_BYTES = 1024 * 1024;

/**
 * The largest MQTT packet a device may send the embedded broker (its remaining length): the largest
 * payload with room for the topic and headers. A device's message between MAX_PAYLOAD_BYTES and this
 * reaches its reader and is dropped there, counted as `too-large`; above it the broker closes the
 * connection at the packet's header. The server's own connections keep BROKER_MAX_PACKET_BYTES.
 */
export const DEVICE_MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 4 * 1024;
