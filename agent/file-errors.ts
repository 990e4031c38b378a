import { describeSystemError, errorMessage, isSystemError } from '../shared/util/errors.ts';

/**
 * A failed operation on a file as one line naming the file and the error:
 * `EACCES: permission denied, open '/data/models/…/model.onnx'`, or, for an error node does not
 * name a path in (a read or write on an open file), `/data/models/…/model.onnx: EIO: i/o error, read`.
 */
export function describeFileError(path: string, error: unknown): string {
  if (isSystemError(error) && error.path) return describeSystemError(error);
  return `${path}: ${errorMessage(error)}`;
}


/**
 * Why the agent cannot use its data dir, in the words of what is wrong where node's words name
 * only a system call: a directory named `state.json` (EISDIR), a file named `models` (EEXIST from
 * mkdir), a file on the way to one (ENOTDIR). Other errors as node words them, naming the path.
 */
export function describeDataDirError(error: NodeJS.ErrnoException): string {
  const { code, syscall, path } = error;
  if (path !== undefined) {
    const unlike = `(${code}); remove it or choose another --data-dir`;
    if (code === 'EISDIR') return `${path} is a directory where the agent keeps a file ${unlike}`;
    if (code === 'EEXIST' && syscall === 'mkdir') return `${path} is a file where the agent keeps a directory ${unlike}`;
    if (code === 'ENOTDIR') return `a file stands where a directory belongs in ${path} ${unlike}`;
  }
  return describeSystemError(error);
}
