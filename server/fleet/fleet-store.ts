import { AuditRepository } from '../store/repositories/audit-repository.ts';
import { DeviceAssignmentsRepository } from '../store/repositories/device-assignments-repository.ts';
import { DeviceReportsRepository } from '../store/repositories/device-reports-repository.ts';
import { DevicesRepository } from '../store/repositories/devices-repository.ts';
import { FleetCommandsRepository } from '../store/repositories/fleet-commands-repository.ts';
import { FleetSequencesRepository } from '../store/repositories/fleet-sequences-repository.ts';
import { TokensRepository } from '../store/repositories/tokens-repository.ts';
import { holdRolloutRevision } from '../store/repositories/rollouts-repository.ts';
import { ModelsRepository } from '../store/repositories/models-repository.ts';
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
  /** Holds a rollout at a revision for the rest of the transaction (a rollout's fenced recording; see holdRolloutRevision). */
  readonly rolloutRevisions: { hold(rolloutId: string, revision: number): Promise<string | null> };
  /**
   * Locks the model's row for the rest of the transaction (ModelsRepository.lockModel, as a
   * retirement locks it), then reads whether the version is retired (undefined: no such version).
   */
  readonly versions: {
    lockAndReadRetired(model: string, version: string): Promise<boolean | undefined>;
    /** The version's artifact id (what a ModelRef's sha256 is); undefined: no such version. Retired ones have theirs. */
    artifactOf(model: string, version: string): Promise<string | undefined>;
  };
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
    rolloutRevisions: { hold: (rolloutId, revision) => holdRolloutRevision(db, rolloutId, revision) },
    versions: {
      lockAndReadRetired: async (model, version) => {
        await new ModelsRepository(db).lockModel(model);
        const row = await db.get<{ retired: number | boolean }>('SELECT retired FROM model_versions WHERE model = ? AND version = ?', [model, version]);
        return row ? Number(row.retired) !== 0 : undefined;
      },
      artifactOf: async (model, version) => {
        const row = await db.get<{ artifact_id: string }>('SELECT artifact_id FROM model_versions WHERE model = ? AND version = ?', [model, version]);
        return row ? String(row.artifact_id) : undefined;
      },
    },
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
