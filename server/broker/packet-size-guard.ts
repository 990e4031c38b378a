import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { MqttFrameScanner, type FrameRefusal } from './mqtt-frame-scanner.ts';

/**
 * A broker connection as aedes reads it, with every MQTT packet's declared size checked at its
 * fixed header. aedes' parser (mqtt-packet) has no size limit and collects a whole packet in
 * memory before anything, authentication included, looks at it: two unauthenticated CONNECTs
 * declaring 200 MB each grew the server by 300 MiB. A connection whose packet declares more than
 * `limit` is destroyed before the body is read; what the broker writes goes to the socket as is.
 */
export class PacketSizeGuard extends Duplex {
  readonly #socket: Socket;
  /** The callback of a write the socket took over its high-water mark: called on its 'drain'. */
  #writeDone: (() => void) | undefined;
  readonly #scanner: MqttFrameScanner;

  constructor(socket: Socket, limit: number, onRefused: (refusal: FrameRefusal) => void, firstLimit = limit) {
    super({ allowHalfOpen: false, readableHighWaterMark: socket.readableHighWaterMark, writableHighWaterMark: socket.writableHighWaterMark });
    this.#socket = socket;
    // The socket reads ahead into this stream, so the client's end can arrive while packets it sent
    // before still wait here for aedes (which reads on only after handling the last packet, e.g. a
    // CONNECT's password check); a socket that is not half-open would close then and lose them.
    // Instead this stream ends the socket once the broker has read everything (allowHalfOpen: false
    // above), as a plain socket does.
    socket.allowHalfOpen = true;
    const scanner = new MqttFrameScanner(limit, firstLimit);
    this.#scanner = scanner;
    socket.on('data', (chunk: Buffer) => {
      const refusal = scanner.scan(chunk);
      if (refusal) {
        onRefused(refusal);
        socket.destroy();
        return;
      }
      // Backpressure as aedes reads: the socket stops reading while this side is full.
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('drain', () => {
      const done = this.#writeDone;
      this.#writeDone = undefined;
      done?.();
    });
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy());
  }

  /** The limit of the packets whose headers have not been read yet (see MqttFrameScanner.setLimit). */
  setLimit(limit: number): void {
    this.#scanner.setLimit(limit);
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: () => void): void {
    if (this.#socket.write(chunk, encoding)) callback();
    else this.#writeDone = callback;
  }

  /** mqtt-packet corks the stream for each packet's pieces; they reach the socket corked too, as one write. */
  override _writev(chunks: { chunk: Buffer; encoding: BufferEncoding }[], callback: () => void): void {
    const socket = this.#socket;
    socket.cork();
    let flowing = true;
    for (const { chunk, encoding } of chunks) flowing = socket.write(chunk, encoding);
    socket.uncork();
    if (flowing) callback();
    else this.#writeDone = callback;
  }

  override _final(callback: () => void): void {
    this.#socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    this.#writeDone = undefined;
    this.#socket.destroy();
    callback(error);
  }
}
