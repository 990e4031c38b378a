import { ServiceError } from '../app/service-error.ts';
import type { AssignCommand, DeliveryResult, FleetPort, RevertCommand, TargetDevice } from './fleet-port.ts';

const MESSAGE = 'this server has no device fleet wired for rollouts (the fleet module: MQTT broker and device registry)';

/**
 * The FleetPort of a server that runs no fleet: starting a rollout is refused (503) with the
 * reason; recovered rollouts keep their pending actions, retried until a fleet is wired.
 */
export class UnwiredFleet implements FleetPort {
  async listDevices(): Promise<readonly TargetDevice[]> {
    throw new ServiceError('unavailable', MESSAGE);
  }

  async assign(_command: AssignCommand): Promise<readonly DeliveryResult[]> {
    throw new Error(MESSAGE);
  }

  async revert(_command: RevertCommand): Promise<readonly DeliveryResult[]> {
    throw new Error(MESSAGE);
  }
}
