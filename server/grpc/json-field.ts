import { duplicateJsonKey } from '../../shared/util/duplicate-keys.ts';
import { describeDataProblem, untrustedDataProblem } from '../../shared/util/untrusted-data.ts';
import { ServiceError } from '../app/service-error.ts';

/**
 * A JSON string field of a gRPC request ('' is absent); malformed, too deep or `__proto__`-keyed
 * JSON is INVALID_ARGUMENT naming the field, and so is a key given twice in one object, as REST
 * refuses it in a body (JSON.parse would keep the last, so a signed manifest could say two things).
 */
export function parseJsonField(text: string, field: string): unknown {
  if (text === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ServiceError('bad_request', `${field}: malformed JSON (${(error as Error).message})`);
  }
  const duplicate = duplicateJsonKey(text);
  if (duplicate !== null) throw new ServiceError('bad_request', `${field}.${duplicate}: given twice; send each field once`);
  const problem = untrustedDataProblem(value);
  if (problem) throw new ServiceError('bad_request', describeDataProblem(problem, field));
  return value;
}
