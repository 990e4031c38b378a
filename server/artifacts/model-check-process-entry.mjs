// The model-check child process's entry point (see ../jobs/worker-module.mjs: it loads the
// module's compiled JavaScript when it is there, else the TypeScript through tsx).
import { importWorkerModule } from '../jobs/worker-module.mjs';

await importWorkerModule('model-check-process', import.meta.url);
