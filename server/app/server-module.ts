import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { RouteSpec } from '../http/route-spec.ts';

export interface GrpcServiceBinding {
  service: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

/** A network endpoint the server bound; the start-up line names each as `name=port`. */
export interface Listener {
  name: string;
  port: number;
  close(): Promise<void>;
}

/**
 * One subsystem of the server. start-server composes modules: their REST routes go under /api
 * (and into the OpenAPI document), their gRPC services onto the gRPC server; `start` runs
 * before the listeners open (and may open its own, e.g. MQTT), `stop` on shutdown, in reverse order.
 */
export interface ServerModule {
  name: string;
  routes?: RouteSpec[];
  grpcServices?: GrpcServiceBinding[];
  start?(): Promise<Listener[] | void>;
  stop?(): Promise<void>;
}
