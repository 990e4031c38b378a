// Worker threads do not inherit the tsx loader that bin/fleetprune.js registers in the main
// thread, so the worker registers it itself before loading the TypeScript worker (as the prune worker's).
import { register } from 'tsx/esm/api';

register();
await import('./job-data-check-worker.ts');
