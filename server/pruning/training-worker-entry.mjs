// A training thread's entry point (see ../jobs/worker-module.mjs).
import { importWorkerModule } from '../jobs/worker-module.mjs';

await importWorkerModule('training-worker', import.meta.url);
