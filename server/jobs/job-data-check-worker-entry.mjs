// The data-check worker thread's entry point (see worker-module.mjs).
import { importWorkerModule } from './worker-module.mjs';

await importWorkerModule('job-data-check-worker', import.meta.url);
