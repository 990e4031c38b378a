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

