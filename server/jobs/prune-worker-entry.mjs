// The prune worker thread's entry point (see worker-module.mjs).
import { importWorkerModule } from './worker-module.mjs';

await importWorkerModule('prune-worker', import.meta.url);
