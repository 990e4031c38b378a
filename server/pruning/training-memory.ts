import { UserError } from '../../shared/util/errors.ts';

/**
 * How a training that does not fit the wasm backend's heap ends: inside the WebAssembly module,
 * whose memory is wasm32's (at most 4 GB), as "memory access out of bounds" or as emscripten's
 * "Aborted()" after a failed allocation. Seen on 8,192 features into 3 layers of 4096 units
 * (after 15 s) and on 20,000 features into one layer of 4096.
 */
const WASM_HEAP_FAILURE = /^(memory access out of bounds|Aborted\(|out of memory|Array buffer allocation failed)/i;

/**
 * `error` in words the user can act on when it is the wasm heap running out during training;
 * any other error as it is. The up-front weight limit (assertTrainableSize) refuses a model too
 * large before it trains; this names what that cannot foresee, such as a data set too large to sit
 * in the heap beside the model, which the CLI otherwise showed as an internal error.
 */
export function explainTrainingFailure(error: unknown, backend: string): unknown {
  if (backend !== 'wasm' || !(error instanceof Error) || !WASM_HEAP_FAILURE.test(error.message)) return error;
  const what = error.message.split('\n', 1)[0]!.replace(/\. Build with -sASSERTIONS.*$/, '');
  return new UserError(
    `training ran out of memory: the wasm backend holds at most 4 GB (it ended with "${what}"); use fewer units or layers, or fewer rows or features`,
    { cause: error },
  );
}
