import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Router } from 'express';
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
  /** Pages served outside /api (the dashboard); mounted at the root, before the 404 handler. */
  pages?: Router;
  start?(): Promise<Listener[] | void>;
  stop?(): Promise<void>;
}
