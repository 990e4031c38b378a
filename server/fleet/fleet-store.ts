import { AuditRepository } from '../store/repositories/audit-repository.ts';
import { DeviceAssignmentsRepository } from '../store/repositories/device-assignments-repository.ts';
import { DeviceReportsRepository } from '../store/repositories/device-reports-repository.ts';
import { DevicesRepository } from '../store/repositories/devices-repository.ts';
import { FleetCommandsRepository } from '../store/repositories/fleet-commands-repository.ts';
import { FleetSequencesRepository } from '../store/repositories/fleet-sequences-repository.ts';
import { TokensRepository } from '../store/repositories/tokens-repository.ts';
import type { SqlExecutor } from '../store/sql-engine.ts';
import type { Store } from '../store/store.ts';

/** The repositories the fleet writes, bound to one executor (the engine or an open transaction). */
export interface FleetRepositories {
  readonly devices: DevicesRepository;
  readonly reports: DeviceReportsRepository;
  readonly assignments: DeviceAssignmentsRepository;
  readonly commands: FleetCommandsRepository;
  readonly sequences: FleetSequencesRepository;
  readonly tokens: TokensRepository;
  readonly audit: AuditRepository;
}

function fleetRepositoriesOf(db: SqlExecutor): FleetRepositories {
  return {
    devices: new DevicesRepository(db),
    reports: new DeviceReportsRepository(db),
    assignments: new DeviceAssignmentsRepository(db),
    commands: new FleetCommandsRepository(db),
    sequences: new FleetSequencesRepository(db),
    tokens: new TokensRepository(db),
    audit: new AuditRepository(db),
  };
}

/** The fleet's view of the server store: its repositories, alone or in one transaction. */
export class FleetStore {
  readonly repos: FleetRepositories;
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
    this.repos = fleetRepositoriesOf(store.engine);
  }

  transaction<T>(work: (tx: FleetRepositories) => Promise<T>): Promise<T> {
    return this.#store.engine.transaction((tx) => work(fleetRepositoriesOf(tx)));
  }
}
