/** Why a scanner refused a stream: a packet declared over the limit, or a length field over 4 bytes. */
export type FrameRefusal = { reason: 'too-large'; declaredBytes: number } | { reason: 'malformed-length' };

/** A remaining length takes at most 4 bytes (MQTT 3.1.1 §2.2.3); a continuation bit on the 4th is malformed. */
const MAX_LENGTH_BYTES = 4;

/**
 * Follows the packet boundaries of an MQTT byte stream by the fixed headers alone (a type byte,
 * then a remaining length of 1 to 4 bytes) and skips each packet's body in bulk, so watching a
 * connection costs a few steps per packet, not per byte. It refuses a packet as soon as its header
 * declares more than `limit` bytes, before any of the body has arrived.
 */
export class MqttFrameScanner {
  #limit: number;
  /** The first packet's header has been read: `#current` follows `#limit` from then on. */
  #pastFirst = false;
  /** The limit of the next packet: `firstLimit` for the first (the CONNECT), then `limit`. */
  #current: number;
  /** Body bytes of the current packet not seen yet. */
  #skip = 0;
  /** Remaining-length bytes read of the current header; -1 while the next byte is a type byte. */
  #lengthBytes = -1;
  #length = 0;
  #multiplier = 1;
  #refusal: FrameRefusal | null = null;

  /**
   * `limit`: the largest remaining length (the bytes after the fixed header) a packet may declare;
   * `firstLimit`, that of the first packet, the CONNECT (a few hundred bytes in practice), which
   * arrives before any authentication: a smaller one bounds what an anonymous connection holds.
   */
  constructor(limit: number, firstLimit = limit) {
    this.#limit = limit;
    this.#current = Math.min(firstLimit, limit);
  }

  /**
   * Changes the limit of the packets whose headers are still to come (the first packet keeps its
   * own): the broker raises it once a connection proves to be the server's, whose messages may be larger.
   */
  setLimit(limit: number): void {
    this.#limit = limit;
    if (this.#pastFirst) this.#current = limit;
  }

  /** Reads the next bytes of the stream; non-null once it must be refused (and from then on). */
  scan(chunk: Uint8Array): FrameRefusal | null {
    if (this.#refusal) return this.#refusal;
    const end = chunk.length;
    let i = 0;
    while (i < end) {
      if (this.#skip > 0) {
        const step = Math.min(this.#skip, end - i);
        this.#skip -= step;
        i += step;
        continue;
      }
      if (this.#lengthBytes < 0) {
        // The type and flags byte: mqtt-packet judges it; only the length matters here.
        i++;
        this.#lengthBytes = 0;
        this.#length = 0;
        this.#multiplier = 1;
        continue;
      }
      const byte = chunk[i++];
      this.#length += (byte & 0x7f) * this.#multiplier;
      this.#lengthBytes++;
      if (byte & 0x80) {
        if (this.#lengthBytes === MAX_LENGTH_BYTES) return (this.#refusal = { reason: 'malformed-length' });
        this.#multiplier *= 128;
        continue;
      }
      if (this.#length > this.#current) return (this.#refusal = { reason: 'too-large', declaredBytes: this.#length });
      this.#current = this.#limit;
      this.#pastFirst = true;
      this.#skip = this.#length;
      this.#lengthBytes = -1;
    }
    return null;
  }
}
