import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainTrainingFailure } from '../../server/pruning/training-memory.ts';
import { UserError } from '../../shared/util/errors.ts';

test('the wasm heap running out during training is named in words the user can act on; other failures pass as they are', () => {
  // The two ways it ended in this repository's runs (a RuntimeError of the WebAssembly module, and emscripten's abort).
  for (const [message, shown] of [
    ['memory access out of bounds', 'memory access out of bounds'],
    ['Aborted(). Build with -sASSERTIONS for more info.', 'Aborted()'],
  ] as const) {
    const cause = new WebAssembly.RuntimeError(message);
    const explained = explainTrainingFailure(cause, 'wasm');
    assert.ok(explained instanceof UserError, `${message}: ${String(explained)}`);
    assert.equal(
      explained.message,
      `training ran out of memory: the wasm backend holds at most 4 GB (it ended with "${shown}"); use fewer units or layers, or fewer rows or features`,
    );
    assert.equal(explained.cause, cause);
    // Another backend's failure of that wording is not the wasm heap's.
    assert.equal(explainTrainingFailure(cause, 'tensorflow'), cause);
  }
  const other = new Error('the trained general model was trained on other data or options');
  assert.equal(explainTrainingFailure(other, 'wasm'), other);
  assert.equal(explainTrainingFailure('a string', 'wasm'), 'a string');
});
