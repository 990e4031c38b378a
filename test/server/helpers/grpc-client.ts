import { credentials, Metadata, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadFleetpruneProto, type FleetpruneProto } from '../../../shared/proto/load-proto.ts';

/** A raw gRPC client for tests: unary calls and collected server streams. */
export function grpcClient(address: string, service: keyof FleetpruneProto, token: string | null, creds: ChannelCredentials = credentials.createInsecure()) {
  const client = new (loadFleetpruneProto()[service])(address, creds) as Client & Record<string, Function>;
  const metadata = new Metadata();
  if (token !== null) metadata.set('authorization', `Bearer ${token}`);
  return {
    call<T = any>(method: string, request: object): Promise<T> {
      return new Promise((resolve, reject) =>
        client[method]!.call(client, request, metadata, (error: ServiceError | null, response: T) => (error ? reject(error) : resolve(response))),
      );
    },
    stream<T = any>(method: string, request: object): Promise<T[]> {
      return new Promise((resolve, reject) => {
        const messages: T[] = [];
        const call = client[method]!.call(client, request, metadata);
        call.on('data', (message: T) => messages.push(message));
        call.on('error', reject);
        call.on('end', () => resolve(messages));
      });
    },
    /** The call itself, for tests that pause, cancel or read it by hand. */
    open(method: string, request: object) {
      return client[method]!.call(client, request, metadata) as import('@grpc/grpc-js').ClientReadableStream<any>;
    },
    close: () => client.close(),
    /** The underlying client and its metadata, for calls of other kinds (client streams). */
    client,
    metadata,
  };
}
