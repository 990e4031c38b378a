import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

export const PROTO_FILE = fileURLToPath(new URL('./fleetprune.proto', import.meta.url));

/** Field names stay snake_case as in the .proto; int64 values arrive as strings. */
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true } as const;

export interface FleetpruneProto {
  ModelRegistry: ServiceClientConstructor;
  Blobs: ServiceClientConstructor;
  Tokens: ServiceClientConstructor;
  Audit: ServiceClientConstructor;
  Jobs: ServiceClientConstructor;
  Rollouts: ServiceClientConstructor;
  Devices: ServiceClientConstructor;
  Assignments: ServiceClientConstructor;
}

let loaded: FleetpruneProto | undefined;

/** The fleetprune.v1 services, for servers (`.service`) and clients (constructors). */
export function loadFleetpruneProto(): FleetpruneProto {
  if (!loaded) {
    const root = loadPackageDefinition(loadSync(PROTO_FILE, LOADER_OPTIONS)) as GrpcObject;
    loaded = ((root.fleetprune as GrpcObject).v1 as unknown) as FleetpruneProto;
  }
  return loaded;
}

/**
 * The descriptor (DescriptorProto, as @grpc/proto-loader gives it) of the fleetprune.v1 message
 * called `name` (`Model`), or undefined when there is no such message.
 */
export function fleetpruneMessageType(name: string): unknown {
  const entry = (loadFleetpruneProto() as unknown as Record<string, unknown>)[name] as { format?: string; type?: unknown } | undefined;
  return typeof entry === 'object' && entry !== null && entry.format?.startsWith('Protocol Buffer 3 DescriptorProto') ? entry.type : undefined;
}
