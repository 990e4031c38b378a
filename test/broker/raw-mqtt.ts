import { connect, type Socket } from 'node:net';

/** MQTT's variable-length "remaining length" encoding (1 to 4 bytes). */
export function remainingLength(value: number): Buffer {
  const bytes: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    bytes.push(byte);
  } while (value > 0);
  return Buffer.from(bytes);
}

function utf8Field(text: string): Buffer {
  const bytes = Buffer.from(text);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** An MQTT 3.1.1 CONNECT (clean session, username and password, 60 s keepalive). */
export function connectPacket(clientId: string, username: string, password: string): Buffer {
  const variableHeader = Buffer.concat([utf8Field('MQTT'), Buffer.from([4, 0xc2, 0, 60])]);
  const body = Buffer.concat([variableHeader, utf8Field(clientId), utf8Field(username), utf8Field(password)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

/** A TCP connection with what it received and whether (and when) it closed, for bytes a real client would not send. */
export interface RawConnection {
  socket: Socket;
  received: () => Buffer;
  closed: Promise<void>;
  isClosed: () => boolean;
}

export function rawConnect(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    let isClosed = false;
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A write into a connection the broker closed fails with EPIPE or ECONNRESET: expected here.
    socket.on('error', () => {});
    const closed = new Promise<void>((resolveClosed) => socket.once('close', () => {
      isClosed = true;
      resolveClosed();
    }));
    socket.once('connect', () => resolve({ socket, received: () => Buffer.concat(chunks), closed, isClosed: () => isClosed }));
    socket.once('error', reject);
  });
}

/** Writes `buffer` and waits for the socket to take more; false once the connection is gone. */
export async function writeOrClosed(connection: RawConnection, buffer: Buffer): Promise<boolean> {
  if (connection.isClosed() || connection.socket.destroyed) return false;
  if (connection.socket.write(buffer)) return true;
  await Promise.race([new Promise((resolve) => connection.socket.once('drain', resolve)), connection.closed]);
  return !connection.isClosed();
}

/** Whether the broker closed the connection within `ms`. */
export async function closedWithin(connection: RawConnection, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([connection.closed, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
  return connection.isClosed();
}
