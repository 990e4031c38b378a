import type { GrpcServiceBinding } from '../app/server-module.ts';
import type { Permission } from '../auth/roles.ts';

/** What a gRPC method needs, declared once where GrpcHandlers makes its handler; the auth interceptor enforces it. */
export interface MethodAccess {
  /** `Service/Method`, as the call-duration metric names it. */
  name: string;
  permission: Permission;
}

const declared = new WeakMap<object, MethodAccess>();

/** Tags `handler` with what its method needs. */
export function declareAccess<H extends object>(handler: H, access: MethodAccess): H {
  declared.set(handler, access);
  return handler;
}

/**
 * Each served method's access by its path (`/fleetprune.v1.Jobs/StartPrune`). A method whose
 * handler declares none (missing, or not made by GrpcHandlers) stops the start: nothing is served
 * without a permission.
 */
export function accessByPath(bindings: readonly GrpcServiceBinding[]): Map<string, MethodAccess> {
  const table = new Map<string, MethodAccess>();
  for (const { service, implementation } of bindings) {
    for (const [name, definition] of Object.entries(service)) {
      const handler = implementation[name];
      const access = handler === undefined ? undefined : declared.get(handler);
      if (!access) throw new Error(`gRPC method ${definition.path} declares no permission (make its handler with GrpcHandlers)`);
      table.set(definition.path, access);
    }
  }
  return table;
}
